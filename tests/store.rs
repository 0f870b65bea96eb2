//! The dataset store through its library API: the .npy reader and writer, the manifest checks,
//! the staged writer (atomic commit, cleanup on failure, several threads) and the mapped reader.

mod common;

use common::{TempDir, snapshot};
use ndt::store::npy::{self, DType, NpyArray, parse_header};
use ndt::store::writer::split_trials;
use ndt::store::{Dataset, DatasetWriter, Manifest, NewSession, SplitName};
use std::path::Path;

/// A small session whose count at (trial, bin, neuron) is a known function of the indices.
fn session(id: &str, n_trials: usize, n_bins: usize, n_neurons: usize) -> NewSession {
    NewSession {
        id: id.to_string(),
        subject: "S1".into(),
        lab: "L1".into(),
        animal: Some("A1".into()),
        n_trials,
        n_bins,
        n_neurons,
        bin_size_s: 0.02,
        onset_bin: Some(1),
        regions: (0..n_neurons)
            .map(|j| ["VISp", "CA1", "LP"][j % 3].to_string())
            .collect(),
        choice: (0..n_trials).map(|t| [-1, 1, 0][t % 3]).collect(),
        behaviour: vec![(
            "reward".into(),
            (0..n_trials).map(|t| t as f32 * 0.5).collect(),
        )],
        provenance: serde_json::json!({"importer": "test"}),
    }
}

fn count(seed: u8, t: usize, b: usize, j: usize) -> u8 {
    (seed as usize * 31 + t * 7 + b * 3 + j * 11) as u8
}

fn add(w: &DatasetWriter, s: NewSession, seed: u8) -> ndt::Result<()> {
    let nn = s.n_neurons;
    w.add_session(s, &mut |t, out| {
        for (k, o) in out.iter_mut().enumerate() {
            *o = count(seed, t, k / nn, k % nn);
        }
        Ok(())
    })
}

fn make_dataset(dir: &Path) {
    let w = DatasetWriter::open(dir, 42).unwrap();
    add(&w, session("a", 20, 4, 5), 1).unwrap();
    add(&w, session("b", 33, 3, 7), 2).unwrap();
    w.set_extra("note", serde_json::json!({"k": 1}));
    w.commit().unwrap();
}

#[test]
fn header_versions_and_byte_orders() {
    let p = Path::new("x.npy");
    let h = npy::header_bytes(DType::U8, &[2, 3, 4]);
    assert_eq!(h.len() % 64, 0);
    let mut file = h.clone();
    file.extend(0..24u8);
    let hdr = parse_header(&file, p).unwrap();
    assert_eq!(hdr.shape, vec![2, 3, 4]);
    assert_eq!(hdr.dtype, DType::U8);
    assert!(!hdr.fortran_order);
    assert_eq!(hdr.data_offset, h.len());
    hdr.check_len(file.len(), p).unwrap();

    // Version 2.0 and 3.0 use a 4-byte header length.
    for version in [2u8, 3] {
        let dict = b"{'descr': '>i2', 'fortran_order': True, 'shape': (3, 2), }\n";
        let mut f = npy::MAGIC.to_vec();
        f.extend([version, 0]);
        f.extend((dict.len() as u32).to_le_bytes());
        f.extend(dict);
        let off = f.len();
        for v in [1i16, -2, 300, 4, 5, 6] {
            f.extend(v.to_be_bytes());
        }
        let h = parse_header(&f, p).unwrap();
        assert_eq!(h.dtype, DType::I16);
        assert!(!h.little_endian && h.fortran_order);
        assert_eq!(h.data_offset, off);
        let a = NpyArray::from_bytes(f, p).unwrap();
        // Fortran [3, 2] storage 1,-2,300,4,5,6 is C-order rows (1,4), (-2,5), (300,6).
        assert_eq!(a.to_f64(p).unwrap(), vec![1.0, 4.0, -2.0, 5.0, 300.0, 6.0]);
    }
}

#[test]
fn header_errors_name_the_problem() {
    let p = Path::new("bad.npy");
    let good = {
        let mut f = npy::header_bytes(DType::F32, &[4]);
        f.extend([0u8; 16]);
        f
    };
    let err = |bytes: &[u8]| parse_header(bytes, p).unwrap_err().to_string();
    let mut wrong = good.clone();
    wrong[1] = b'X';
    assert!(err(&wrong).contains("magic"), "{}", err(&wrong));
    let mut ver = good.clone();
    ver[6] = 4;
    assert!(err(&ver).contains("version 4.0"), "{}", err(&ver));
    assert!(err(&good[..9]).contains("truncated"));
    assert!(err(&good[..40]).contains("truncated"));
    let h = parse_header(&good, p).unwrap();
    let short = h.check_len(good.len() - 1, p).unwrap_err().to_string();
    assert!(
        short.contains("truncated") && short.contains("bad.npy"),
        "{short}"
    );
    let long = h.check_len(good.len() + 3, p).unwrap_err().to_string();
    assert!(long.contains("3 unexpected bytes"), "{long}");

    let with_dict = |dict: &str| {
        let mut f = npy::MAGIC.to_vec();
        f.extend([1, 0]);
        f.extend((dict.len() as u16).to_le_bytes());
        f.extend(dict.as_bytes());
        f
    };
    let e = err(&with_dict(
        "{'descr': '|O', 'fortran_order': False, 'shape': (3,), }\n",
    ));
    assert!(e.contains("object dtype") && e.contains("pickled"), "{e}");
    let e = err(&with_dict(
        "{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (3,), }\n",
    ));
    assert!(e.contains("structured"), "{e}");
    let e = err(&with_dict(
        "{'descr': '<i4', 'fortran_order': False, 'shape': (3,\n",
    ));
    assert!(e.contains("corrupt .npy header"), "{e}");
    let e = err(&with_dict("{'descr': '<i4', 'shape': (3,), }\n"));
    assert!(e.contains("fortran_order"), "{e}");
    let e = err(&with_dict(
        "{'descr': '<c8', 'fortran_order': False, 'shape': (3,), }\n",
    ));
    assert!(e.contains("unsupported dtype"), "{e}");
    let e = err(&with_dict(
        "{'descr': '<i4', 'fortran_order': False, 'shape': (-3,), }\n",
    ));
    assert!(e.contains("negative"), "{e}");
}

#[test]
fn writers_round_trip_every_type() {
    let d = TempDir::new("npy-rt");
    let p = d.join("u.npy");
    npy::write_npy_unicode(&p, &["VISp".into(), "".into(), "CA1é".into()]).unwrap();
    let a = NpyArray::read(&p).unwrap();
    assert_eq!(a.header.dtype, DType::Unicode(4));
    assert_eq!(a.to_strings(&p).unwrap(), vec!["VISp", "", "CA1é"]);
    let p = d.join("f.npy");
    npy::write_npy_f32(&p, &[3], &[0.5, -1.25, 3.0e9]).unwrap();
    assert_eq!(
        NpyArray::read(&p).unwrap().to_f64(&p).unwrap(),
        vec![0.5, -1.25, 3.0e9]
    );
    let p = d.join("i.npy");
    npy::write_npy_i8(&p, &[2, 2], &[-1, 1, 0, -128]).unwrap();
    let a = NpyArray::read(&p).unwrap();
    assert_eq!(a.shape(), [2, 2]);
    assert_eq!(a.to_f64(&p).unwrap(), vec![-1.0, 1.0, 0.0, -128.0]);
    // Strings of a numeric array are refused and vice versa.
    assert!(a.to_strings(&p).is_err());
}

#[test]
fn split_is_8_1_1_disjoint_and_seeded() {
    for n in [16usize, 17, 100, 333] {
        let s = split_trials(n, 42);
        let k = (n + 5) / 10;
        assert_eq!((s.val.len(), s.test.len()), (k, k), "n={n}");
        let mut all: Vec<u32> = s
            .train
            .iter()
            .chain(&s.val)
            .chain(&s.test)
            .copied()
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..n as u32).collect::<Vec<_>>());
        assert_eq!(s, split_trials(n, 42));
        assert_ne!(s, split_trials(n, 43));
        assert!(s.train.windows(2).all(|w| w[0] < w[1]));
    }
    // Not simply the last trials: the split is random.
    let s = split_trials(100, 42);
    assert_ne!(s.test, (90..100).collect::<Vec<u32>>());
}

#[test]
fn write_then_read_back_exactly() {
    let d = TempDir::new("store-rt");
    let dir = d.join("ds");
    make_dataset(&dir);
    let ds = Dataset::open(&dir).unwrap();
    assert_eq!(ds.n_sessions(), 2);
    for (s, (id, seed, shape)) in [("a", 1u8, [20, 4, 5]), ("b", 2, [33, 3, 7])]
        .into_iter()
        .enumerate()
    {
        assert_eq!(ds.find(id), Some(s));
        let info = ds.session(s);
        assert_eq!([info.n_trials, info.n_bins, info.n_neurons], shape);
        assert_eq!(info.dir, format!("sessions/{s:04}"));
        for t in 0..shape[0] {
            let want: Vec<u8> = (0..shape[1] * shape[2])
                .map(|k| count(seed, t, k / shape[2], k % shape[2]))
                .collect();
            assert_eq!(ds.trial(s, t), &want[..], "session {id} trial {t}");
        }
        let choice = ds.choice(s).unwrap();
        assert_eq!(
            choice,
            (0..shape[0])
                .map(|t| [-1i8, 1, 0][t % 3])
                .collect::<Vec<_>>()
        );
        let reward = ds.behaviour(s, "reward").unwrap();
        assert_eq!(reward[3], 1.5);
        assert_eq!(info.split.seed, 42);
        assert_eq!(
            info.split(SplitName::Train).len()
                + info.split(SplitName::Val).len()
                + info.split(SplitName::Test).len(),
            shape[0]
        );
        let (names, index) = info.region_index();
        assert_eq!(names, vec!["VISp", "CA1", "LP"]);
        assert_eq!(&index[..4], &[0, 1, 2, 0]);
        assert_eq!(info.animal.as_deref(), Some("A1"));
        assert_eq!(info.onset_bin, Some(1));
        let mut buf = vec![-1f32; 2 * shape[1] * shape[2]];
        ds.gather_f32(s, &[1, 0], &mut buf);
        assert_eq!(buf[0], count(seed, 1, 0, 0) as f32);
        assert_eq!(buf[shape[1] * shape[2]], count(seed, 0, 0, 0) as f32);
    }
    assert_eq!(ds.manifest.extra["note"], serde_json::json!({"k": 1}));
    // No staging directory is left behind.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with(".staging")),
        "{names:?}"
    );
}

#[test]
fn adding_to_an_existing_dataset_keeps_old_sessions() {
    let d = TempDir::new("store-add");
    let dir = d.join("ds");
    make_dataset(&dir);
    let before = std::fs::read(dir.join("sessions/0000/spikes.npy")).unwrap();
    let w = DatasetWriter::open(&dir, 7).unwrap();
    add(&w, session("c", 16, 2, 2), 3).unwrap();
    w.commit().unwrap();
    let ds = Dataset::open(&dir).unwrap();
    assert_eq!(ds.n_sessions(), 3);
    assert_eq!(ds.session(2).id, "c");
    assert_eq!(ds.session(2).dir, "sessions/0002");
    assert_eq!(ds.session(2).split.seed, 7);
    assert_eq!(ds.session(0).split.seed, 42);
    assert_eq!(ds.manifest.extra["note"], serde_json::json!({"k": 1}));
    assert_eq!(
        std::fs::read(dir.join("sessions/0000/spikes.npy")).unwrap(),
        before
    );
}

#[test]
fn duplicate_id_is_refused() {
    let d = TempDir::new("store-dup");
    let dir = d.join("ds");
    make_dataset(&dir);
    let w = DatasetWriter::open(&dir, 42).unwrap();
    let e = add(&w, session("a", 16, 2, 2), 3).unwrap_err().to_string();
    assert!(
        e.contains("`a`") && e.contains("already") && e.contains("manifest.json"),
        "{e}"
    );
    add(&w, session("new", 16, 2, 2), 3).unwrap();
    let e = add(&w, session("new", 16, 2, 2), 3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("already"), "{e}");
}

#[test]
fn bad_metadata_is_refused() {
    let d = TempDir::new("store-meta");
    let w = DatasetWriter::open(&d.join("ds"), 42).unwrap();
    let cases: Vec<(NewSession, &str)> = vec![
        (session("e", 0, 2, 2), "empty session"),
        (
            {
                let mut s = session("r", 16, 2, 3);
                s.regions.pop();
                s
            },
            "2 region labels for 3 neurons",
        ),
        (
            {
                let mut s = session("c", 16, 2, 3);
                s.choice.pop();
                s
            },
            "15 choices for 16 trials",
        ),
        (
            {
                let mut s = session("v", 16, 2, 3);
                s.choice[2] = 5;
                s
            },
            "not -1, 0 or +1",
        ),
        (
            {
                let mut s = session("b", 16, 2, 3);
                s.bin_size_s = 0.0;
                s
            },
            "bin size",
        ),
        (
            {
                let mut s = session("o", 16, 2, 3);
                s.onset_bin = Some(2);
                s
            },
            "onset bin 2",
        ),
        (
            {
                let mut s = session("h", 16, 2, 3);
                s.behaviour[0].1.pop();
                s
            },
            "behaviour `reward`",
        ),
        (
            {
                let mut s = session("n", 16, 2, 3);
                s.behaviour[0].0 = "../x".into();
                s
            },
            "not allowed",
        ),
    ];
    for (s, want) in cases {
        let e = add(&w, s, 0).unwrap_err().to_string();
        assert!(e.contains(want), "expected `{want}` in: {e}");
    }
}

#[test]
fn failed_writes_leave_the_dataset_as_it_was() {
    let d = TempDir::new("store-fail");
    let dir = d.join("ds");
    make_dataset(&dir);
    let before = snapshot(&dir);
    {
        // A fill error half way through a session, after another session was staged.
        let w = DatasetWriter::open(&dir, 42).unwrap();
        add(&w, session("ok", 16, 2, 2), 3).unwrap();
        let e = w
            .add_session(session("bad", 16, 2, 2), &mut |t, _out| {
                if t == 9 {
                    Err(ndt::error::input("src.npy", "boom"))
                } else {
                    Ok(())
                }
            })
            .unwrap_err();
        assert!(e.to_string().contains("src.npy: boom"));
        // Dropped without commit.
    }
    assert_eq!(snapshot(&dir), before);

    // A writer on a directory that did not exist removes it again.
    let fresh = d.join("fresh");
    {
        let w = DatasetWriter::open(&fresh, 42).unwrap();
        add(&w, session("x", 16, 2, 2), 3).unwrap();
    }
    assert!(!fresh.exists());
}

#[test]
fn a_second_writer_is_locked_out() {
    let d = TempDir::new("store-lock");
    let dir = d.join("ds");
    make_dataset(&dir);
    let w = DatasetWriter::open(&dir, 42).unwrap();
    let e = DatasetWriter::open(&dir, 42).unwrap_err().to_string();
    assert!(e.contains("another ndt process"), "{e}");
    drop(w);
    DatasetWriter::open(&dir, 42).unwrap();
}

#[test]
fn sessions_from_several_threads() {
    let d = TempDir::new("store-threads");
    let dir = d.join("ds");
    let w = DatasetWriter::open(&dir, 42).unwrap();
    std::thread::scope(|sc| {
        for k in 0..6u8 {
            let w = &w;
            sc.spawn(move || {
                let mut s = session(&format!("s{k}"), 16 + k as usize, 3, 4 + k as usize);
                s.subject = format!("subj{k}");
                let nn = s.n_neurons;
                w.add_session_ordered(5 - k as u64, s, &mut |t, out| {
                    for (i, o) in out.iter_mut().enumerate() {
                        *o = count(k, t, i / nn, i % nn);
                    }
                    Ok(())
                })
                .unwrap();
            });
        }
    });
    w.commit().unwrap();
    let ds = Dataset::open(&dir).unwrap();
    let ids: Vec<&str> = ds.sessions().iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["s5", "s4", "s3", "s2", "s1", "s0"]);
    for s in 0..6 {
        let k = 5 - s as u8;
        let nn = 4 + k as usize;
        assert_eq!(ds.trial(s, 3)[nn + 1], count(k, 3, 1, 1));
    }
}

#[test]
fn open_checks_manifest_and_arrays() {
    let d = TempDir::new("store-open");
    let dir = d.join("ds");
    make_dataset(&dir);
    let manifest = dir.join("manifest.json");
    let good = std::fs::read(&manifest).unwrap();

    std::fs::write(&manifest, &good[..good.len() / 2]).unwrap();
    let e = Dataset::open(&dir).unwrap_err().to_string();
    assert!(
        e.contains("manifest.json") && e.contains("corrupt manifest"),
        "{e}"
    );

    let newer = String::from_utf8(good.clone())
        .unwrap()
        .replace("\"format_version\": 1", "\"format_version\": 2");
    std::fs::write(&manifest, newer).unwrap();
    let e = Dataset::open(&dir).unwrap_err().to_string();
    assert!(
        e.contains("manifest.json") && e.contains("written by a newer ndt"),
        "{e}"
    );

    let wrong_n = String::from_utf8(good.clone()).unwrap().replacen(
        "\"n_neurons\": 5",
        "\"n_neurons\": 6",
        1,
    );
    std::fs::write(&manifest, wrong_n).unwrap();
    let e = Dataset::open(&dir).unwrap_err().to_string();
    assert!(e.contains("region labels"), "{e}");

    std::fs::write(&manifest, &good).unwrap();
    let spikes = dir.join("sessions/0001/spikes.npy");
    let bytes = std::fs::read(&spikes).unwrap();
    std::fs::write(&spikes, &bytes[..bytes.len() - 1]).unwrap();
    let e = Dataset::open(&dir).unwrap_err().to_string();
    assert!(
        e.contains("sessions/0001/spikes.npy") && e.contains("truncated"),
        "{e}"
    );

    let mut f = npy::header_bytes(DType::U8, &[33, 7, 3]);
    f.extend(vec![0u8; 33 * 7 * 3]);
    std::fs::write(&spikes, f).unwrap();
    let e = Dataset::open(&dir).unwrap_err().to_string();
    assert!(e.contains("expected uint8 [33, 3, 7]"), "{e}");

    // Manifests are validated on load too.
    let m = Manifest::from_bytes(b"{\"format\": \"other\"}", Path::new("m.json")).unwrap_err();
    assert!(m.to_string().contains("not an ndt dataset manifest"));
}

#[test]
fn leftovers_of_a_dead_writer_are_removed() {
    let d = TempDir::new("store-leftover");
    let dir = d.join("ds");
    make_dataset(&dir);
    let before = snapshot(&dir);
    // What a process killed during an import leaves behind.
    std::fs::create_dir_all(dir.join(".staging-999-1/s1-0")).unwrap();
    std::fs::write(dir.join(".staging-999-1/s1-0/spikes.npy"), b"partial").unwrap();
    std::fs::write(dir.join(".manifest.json.tmp999"), b"{").unwrap();
    let w = DatasetWriter::open(&dir, 42).unwrap();
    drop(w);
    assert_eq!(snapshot(&dir), before);
    Dataset::open(&dir).unwrap();
}
