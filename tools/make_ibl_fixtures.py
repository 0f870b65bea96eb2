#!/usr/bin/env python3
"""Writes the fixtures of `ndt import ibl-hf` into fixtures/ibl/ (run from anywhere).

The files imitate the IBL releases on HuggingFace (nsl-uw/IBL_RepeatedSite_*, IBL MtM *_aligned):
one row per trial, the trial's counts as a CSR matrix (rows = time bins) in
spikes_sparse_data / _indices / _indptr / _shape, plus eid, cluster_regions, choice (float -1/1),
reward, contrast, block, subject, lab.

good/parquet/   two snappy parquet shards, small row groups, two sessions with different neuron
                counts, trials of each session spread over both shards; the shards use different
                physical types (list<int64> as `datasets` writes from Python lists; large_list
                with uint8 data and int32 indices).
good/arrow/     the same trials as an Arrow IPC stream, as `datasets.save_to_disk` writes it
                (data-00000-of-00001.arrow, plus its JSON side files, which the importer ignores).
good/expected.json  the dense counts [trials][bins][neurons] per session (the arrays the CSR
                matrices were made from), regions, choices and behaviour, in import order.
bad/*.parquet, bad/*.arrow  one defect each (see BAD below).
splits/hf/      the same trials as HuggingFace shards that name their split
                (train-00000-of-00001.parquet, validation-..., test-...).
splits/saved/   the same as a `save_to_disk` DatasetDict: train/, val/, test/ folders of
                data-00000-of-00001.arrow (plus dataset_dict.json).
splits/mixed/   a train- shard beside a file that names no split (refused without --resplit).
splits/expected.json  per session, in import order: each trial's split and its index among the
                session's trials in good/expected.json.

Only numpy and pyarrow are needed: python tools/make_ibl_fixtures.py
"""

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "ibl")
BINS = 6

SESSIONS = [
    # eid, subject, lab, regions (one per neuron), n_trials
    ("0a7f1c2e-1111-4c6b-9c1d-aaaaaaaaaaaa", "SWC_043", "hoferlab",
     ["VISa", "VISa", "CA1", "CA1", "DG", "LP", "PO"], 5),
    ("5b3e9d40-2222-4f1a-8e2b-bbbbbbbbbbbb", "KS074", "cortexlab",
     ["CA1", "DG", "DG", "PO"], 4),
]


def dense_session(rng, n_trials, n_neurons):
    """Random sparse counts with a few large values (up to 255)."""
    x = rng.poisson(0.6, size=(n_trials, BINS, n_neurons)).astype(np.int64)
    x[rng.random(x.shape) < 0.5] = 0
    x[0, 1, 0] = 255
    x[-1, BINS - 1, n_neurons - 1] = 17
    x[1, 0, :] = 0  # an empty time bin
    return x


def csr(dense_trial):
    """CSR arrays of one [bins, neurons] trial, computed directly in numpy."""
    data, indices, indptr = [], [], [0]
    for row in dense_trial:
        nz = np.nonzero(row)[0]
        indices.extend(nz.tolist())
        data.extend(row[nz].tolist())
        indptr.append(len(data))
    return data, indices, indptr, list(dense_trial.shape)


def make_rows(rng):
    """All trial rows of both sessions, and the expected dense arrays."""
    rows, expected = [], []
    for eid, subject, lab, regions, n_trials in SESSIONS:
        dense = dense_session(rng, n_trials, len(regions))
        choice = rng.choice([-1.0, 1.0], size=n_trials)
        reward = (rng.random(n_trials) < 0.8).astype(np.float64)
        contrast = rng.choice([0.0, 0.0625, 0.125, 0.25, 1.0], size=n_trials)
        block = rng.choice([0.2, 0.5, 0.8], size=n_trials)
        for t in range(n_trials):
            d, i, p, s = csr(dense[t])
            rows.append(dict(
                spikes_sparse_data=d, spikes_sparse_indices=i, spikes_sparse_indptr=p,
                spikes_sparse_shape=s, eid=eid, cluster_regions=regions,
                choice=float(choice[t]), reward=float(reward[t]), contrast=float(contrast[t]),
                block=float(block[t]), subject=subject, lab=lab,
            ))
        expected.append(dict(
            eid=eid, subject=subject, lab=lab, regions=regions,
            shape=[n_trials, BINS, len(regions)], spikes=dense.tolist(),
            choice=[int(c) for c in choice], reward=reward.tolist(),
            contrast=contrast.tolist(), block=block.tolist(),
        ))
    return rows, expected


def int64_schema():
    """The types `datasets` infers from Python lists of ints."""
    return pa.schema([
        ("spikes_sparse_data", pa.list_(pa.int64())),
        ("spikes_sparse_indices", pa.list_(pa.int64())),
        ("spikes_sparse_indptr", pa.list_(pa.int64())),
        ("spikes_sparse_shape", pa.list_(pa.int64())),
        ("eid", pa.string()),
        ("cluster_regions", pa.list_(pa.string())),
        ("choice", pa.float64()),
        ("reward", pa.float64()),
        ("contrast", pa.float64()),
        ("block", pa.float64()),
        ("subject", pa.string()),
        ("lab", pa.string()),
    ])


def narrow_schema():
    """Typed features: uint8 counts, int32 indices, large lists, large strings."""
    return pa.schema([
        ("spikes_sparse_data", pa.large_list(pa.uint8())),
        ("spikes_sparse_indices", pa.large_list(pa.int32())),
        ("spikes_sparse_indptr", pa.large_list(pa.int32())),
        ("spikes_sparse_shape", pa.list_(pa.int64(), 2)),
        ("eid", pa.large_string()),
        ("cluster_regions", pa.large_list(pa.large_string())),
        ("choice", pa.float32()),
        ("reward", pa.float32()),
        ("contrast", pa.float32()),
        ("block", pa.float32()),
        ("subject", pa.string()),
        ("lab", pa.string()),
    ])


def table(rows, schema):
    cols = {f.name: [r[f.name] for r in rows] for f in schema}
    return pa.table(cols, schema=schema)


def write_parquet(path, rows, schema=None, row_group_size=3):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    t = table(rows, schema or int64_schema())
    pq.write_table(t, path, compression="snappy", row_group_size=row_group_size)


def write_stream(path, rows, schema=None, batch_rows=2):
    """An Arrow IPC stream in record batches of `batch_rows`, like datasets.save_to_disk."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    schema = (schema or int64_schema()).with_metadata(
        {"huggingface": json.dumps({"info": {"features": {}}})})
    t = table(rows, schema)
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_stream(sink, schema) as w:
        for b in t.to_batches(max_chunksize=batch_rows):
            w.write_batch(b)


def copy_rows(rows):
    return [dict(r) for r in rows]


def bad_cases(rows):
    """(file name, rows, schema or None, columns to drop): one defect per file."""
    first = [r for r in rows if r["eid"] == SESSIONS[0][0]]
    n = len(SESSIONS[0][3])
    cases = []

    r = copy_rows(first)
    r[2]["spikes_sparse_indptr"] = r[2]["spikes_sparse_indptr"][:-1]
    cases.append(("indptr_length.parquet", r, None, []))

    r = copy_rows(first)
    idx = list(r[1]["spikes_sparse_indices"])
    idx[-1] = n  # one past the last neuron
    r[1]["spikes_sparse_indices"] = idx
    cases.append(("index_range.parquet", r, None, []))

    r = copy_rows(first)
    p = list(r[3]["spikes_sparse_indptr"])
    p[2], p[3] = p[3] + 1, p[2]
    r[3]["spikes_sparse_indptr"] = p
    cases.append(("indptr_decreasing.parquet", r, None, []))

    r = copy_rows(first)
    r[0]["spikes_sparse_data"] = r[0]["spikes_sparse_data"] + [1]
    cases.append(("data_length.parquet", r, None, []))

    r = copy_rows(first)
    cases.append(("missing_column.parquet", r, None, ["spikes_sparse_indptr"]))

    r = copy_rows(first)
    r[3]["spikes_sparse_shape"] = [BINS + 1, n]
    r[3]["spikes_sparse_indptr"] = r[3]["spikes_sparse_indptr"] + [r[3]["spikes_sparse_indptr"][-1]]
    cases.append(("shape_mismatch.parquet", r, None, []))

    r = copy_rows(first)
    r[1]["cluster_regions"] = r[1]["cluster_regions"][:-1]
    cases.append(("regions_length.parquet", r, None, []))

    r = copy_rows(first)
    r[2]["choice"] = 0.5
    cases.append(("choice_value.parquet", r, None, []))

    r = copy_rows(first)
    for x in r:
        x["choice"] = [x["choice"], x["choice"]]
    schema = int64_schema().set(6, pa.field("choice", pa.list_(pa.float64())))
    cases.append(("choice_length.parquet", r, schema, []))

    r = copy_rows(first)
    d = list(r[4]["spikes_sparse_data"])
    d[0] = 300
    r[4]["spikes_sparse_data"] = d
    cases.append(("over255.parquet", r, None, []))
    return cases


# Release split of each session's trials (by trial index): A 3/1/1, B 2/1/1.
SPLIT_OF = [["train", "train", "val", "train", "test"], ["train", "test", "train", "val"]]


def write_splits(rows):
    """The good trials again, each in the file of its split."""
    root = os.path.join(ROOT, "splits")
    by_split = {"train": [], "val": [], "test": []}
    where = {}
    for k, (eid, *_rest) in enumerate(SESSIONS):
        trials = [r for r in rows if r["eid"] == eid]
        for t, r in enumerate(trials):
            by_split[SPLIT_OF[k][t]].append(r)
            where[id(r)] = (k, t)
    hf = os.path.join(root, "hf")
    names = {"train": "train", "val": "validation", "test": "test"}
    for sp, rs in by_split.items():
        write_parquet(os.path.join(hf, f"{names[sp]}-00000-of-00001.parquet"), rs)
    saved = os.path.join(root, "saved")
    for sp, rs in by_split.items():
        write_stream(os.path.join(saved, sp, "data-00000-of-00001.arrow"), rs,
                     schema=narrow_schema())
    with open(os.path.join(saved, "dataset_dict.json"), "w") as f:
        json.dump({"splits": ["train", "val", "test"]}, f)
    write_parquet(os.path.join(root, "mixed", "train-00000-of-00001.parquet"), by_split["train"])
    write_parquet(os.path.join(root, "mixed", "extra.parquet"), by_split["test"])

    # Import order: files sorted by path, rows in file order; sessions by first appearance.
    def order(files):
        sessions = {}
        for sp in files:
            for r in by_split[sp]:
                k, t = where[id(r)]
                sessions.setdefault(k, []).append(dict(split=sp, trial=t))
        return [dict(eid=SESSIONS[k][0], trials=v) for k, v in sessions.items()]

    expected = {
        "hf": order(["test", "train", "val"]),       # test-, train-, validation-
        "saved": order(["test", "train", "val"]),    # test/, train/, val/
    }
    with open(os.path.join(root, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)


def main():
    rng = np.random.default_rng(20240611)
    rows, expected = make_rows(rng)
    a = [r for r in rows if r["eid"] == SESSIONS[0][0]]
    b = [r for r in rows if r["eid"] == SESSIONS[1][0]]
    # Shard 0: A0-A3 then B0-B1; shard 1: B2-B3 then A4. Import order: A (5 trials), B (4).
    shard0 = a[:4] + b[:2]
    shard1 = b[2:] + a[4:]
    good = os.path.join(ROOT, "good")
    write_parquet(os.path.join(good, "parquet", "train-00000-of-00002.parquet"), shard0)
    write_parquet(os.path.join(good, "parquet", "train-00001-of-00002.parquet"), shard1,
                  schema=narrow_schema(), row_group_size=2)
    arrow_dir = os.path.join(good, "arrow")
    write_stream(os.path.join(arrow_dir, "data-00000-of-00001.arrow"), shard0 + shard1,
                 schema=narrow_schema())
    with open(os.path.join(arrow_dir, "state.json"), "w") as f:
        json.dump({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}, f)
    with open(os.path.join(arrow_dir, "dataset_info.json"), "w") as f:
        json.dump({"features": {}}, f)
    with open(os.path.join(good, "expected.json"), "w") as f:
        json.dump({"sessions": expected}, f)

    write_splits(rows)

    bad = os.path.join(ROOT, "bad")
    for name, r, schema, drop in bad_cases(rows):
        schema = schema or int64_schema()
        for c in drop:
            schema = schema.remove(schema.get_field_index(c))
        write_parquet(os.path.join(bad, name), r, schema=schema)
    # A stream cut off in the middle of a record batch.
    path = os.path.join(bad, "truncated.arrow")
    write_stream(path, a)
    with open(path, "rb") as f:
        whole = f.read()
    with open(path, "wb") as f:
        f.write(whole[: len(whole) * 2 // 3])


if __name__ == "__main__":
    main()
