#!/usr/bin/env python3
"""Writes the NumPy import fixtures in fixtures/npy/ with numpy itself, and the values the
tests expect in fixtures/npy/expected.json (computed here by numpy, not by ndt).

    .venv/bin/python tools/make_npy_fixtures.py

Good sessions (each must import):
  c_u8/           folder: uint8 C order, regions (<U), choice (int8), reward (f8), meta.json
  fortran_i64/    folder: int64 in Fortran order
  i16/            folder: int16, regions saved as bytes (S)
  f64_integral/   folder: float64 holding integers, choice as float with NaN (= unknown)
  big_endian/     folder: >i4 counts, >U regions, >f8 choice, header version 2.0
  v3_header/      folder: uint16 counts, header version 3.0
  clip/           folder: int32 with counts above 255 (imports only with --clip)
  session.npz     np.savez_compressed (deflated members): int32 counts, regions, choice, contrast
  stored.npz      np.savez (stored members): uint8 counts
Bad sessions (each must be refused), in bad/:
  object/         spikes.npy holds a pickled object array
  rank2/          spikes.npy is [trials, N]
  negative/       one count is -1
  nan/            one count is NaN
  fractional/     one count is 1.5
  regions_len/    regions.npy has N + 1 labels
  choice_len/     choice.npy has trials - 1 values
  empty/          spikes.npy is [0, 5, 3]
  few_trials/     spikes.npy has 15 trials (fewer than a batch of 16)
"""
import io
import json
import os
import shutil

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "npy")
rng = np.random.default_rng(20240611)
expected = {}


def counts(shape, dtype, hi=None):
    a = rng.poisson(1.2, size=shape)
    if hi is not None:
        a.flat[:: max(1, a.size // 7)] = hi
    return a.astype(dtype)


def save(path, arr, version=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if version is None:
        np.save(path, arr, allow_pickle=False)
    else:
        with open(path, "wb") as f:
            np.lib.format.write_array(f, arr, version=version, allow_pickle=False)


def record(name, spikes, regions=None, choice=None, behaviour=None, meta=None, clip=False):
    c = np.ascontiguousarray(spikes)
    if clip:
        c = np.clip(c, 0, 255)
    u8 = c.astype(np.uint8)
    expected[name] = {
        "shape": list(spikes.shape),
        "sum": int(u8.astype(np.int64).sum()),
        "counts": u8.ravel(order="C").tolist(),
        "regions": [str(r) for r in (regions if regions is not None else ["unknown"] * spikes.shape[2])],
        "choice": [0 if np.isnan(x) else int(x) for x in np.asarray(choice, dtype=np.float64)]
        if choice is not None
        else [0] * spikes.shape[0],
        "behaviour": {k: np.asarray(v, dtype=np.float32).astype(np.float64).tolist() for k, v in (behaviour or {}).items()},
        "meta": meta or {},
    }


def folder(name, spikes, regions=None, choice=None, behaviour=None, meta=None, version=None, clip=False, record_it=True):
    d = os.path.join(ROOT, name)
    save(os.path.join(d, "spikes.npy"), spikes, version)
    if regions is not None:
        save(os.path.join(d, "regions.npy"), regions, version)
    if choice is not None:
        save(os.path.join(d, "choice.npy"), choice, version)
    for k, v in (behaviour or {}).items():
        save(os.path.join(d, k + ".npy"), v, version)
    if meta is not None:
        with open(os.path.join(d, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)
    if record_it:
        rg = None if regions is None else [r.decode() if isinstance(r, bytes) else str(r) for r in regions.tolist()]
        record(name, spikes, rg, choice, behaviour, meta, clip)


def main():
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    os.makedirs(ROOT)

    # c_u8: every optional member, C order.
    s = counts((20, 6, 5), np.uint8, hi=200)
    regions = np.array(["VISp", "VISp", "CA1", "LP", "CA1"])
    choice = np.array([(-1) ** k for k in range(20)], dtype=np.int8)
    reward = rng.uniform(0, 1, 20)
    meta = {"id": "c-u8-session", "subject": "KS014", "lab": "cortexlab", "bin_size_s": 0.02, "onset_bin": 2}
    folder("c_u8", s, regions, choice, {"reward": reward}, meta)

    # fortran_i64: column-major int64.
    s = np.asfortranarray(counts((18, 7, 4), np.int64, hi=255))
    assert s.flags.f_contiguous and not s.flags.c_contiguous
    folder("fortran_i64", s)

    # i16: regions as a bytes array.
    s = counts((16, 5, 3), np.int16, hi=17)
    folder("i16", s, np.array([b"MOs", b"MOs", b"ACA"]))

    # f64_integral: floats holding integers; choice as floats with NaN.
    s = counts((17, 4, 6), np.float64, hi=100)
    ch = rng.choice([-1.0, 1.0], 17)
    ch[3] = np.nan
    folder("f64_integral", s, choice=ch)

    # big_endian: non-native byte order everywhere, header version 2.0.
    s = counts((16, 3, 5), np.dtype(">i4"), hi=254)
    regions = np.array(["PO", "PO", "LGd", "LGd", "VPM"], dtype=">U3")
    ch = rng.choice([-1.0, 1.0], 16).astype(">f8")
    folder("big_endian", s, regions, ch, version=(2, 0))

    # v3_header: header version 3.0 (UTF-8 header text).
    s = counts((16, 2, 3), np.uint16, hi=9)
    folder("v3_header", s, version=(3, 0))

    # clip: counts above 255.
    s = counts((16, 3, 2), np.int32, hi=1000)
    folder("clip", s, clip=True)

    # session.npz (deflated) and stored.npz (stored).
    s = counts((24, 8, 7), np.int32, hi=31)
    regions = np.array(["GRN", "GRN", "IRN", "IRN", "IRN", "PARN", "GRN"])
    ch = rng.choice([-1, 1], 24).astype(np.int64)
    contrast = rng.choice([0.0, 0.0625, 0.125, 0.25, 1.0], 24)
    np.savez_compressed(os.path.join(ROOT, "session.npz"), spikes=s, regions=regions, choice=ch, contrast=contrast)
    record("session.npz", s, regions.tolist(), ch, {"contrast": contrast})
    s = counts((16, 4, 3), np.uint8, hi=3)
    np.savez(os.path.join(ROOT, "stored.npz"), spikes=s)
    record("stored.npz", s)

    # Bad sessions.
    bad = lambda name: os.path.join(ROOT, "bad", name)
    os.makedirs(bad("object"))
    np.save(os.path.join(bad("object"), "spikes.npy"), np.array([[[1]], "x", None], dtype=object), allow_pickle=True)
    save(os.path.join(bad("rank2"), "spikes.npy"), counts((16, 5), np.uint8))
    s = counts((16, 2, 2), np.int16)
    s[4, 1, 0] = -1
    save(os.path.join(bad("negative"), "spikes.npy"), s)
    s = counts((16, 2, 2), np.float32)
    s[7, 0, 1] = np.nan
    save(os.path.join(bad("nan"), "spikes.npy"), s)
    s = counts((16, 2, 2), np.float64)
    s[2, 1, 1] = 1.5
    save(os.path.join(bad("fractional"), "spikes.npy"), s)
    save(os.path.join(bad("regions_len"), "spikes.npy"), counts((16, 2, 3), np.uint8))
    save(os.path.join(bad("regions_len"), "regions.npy"), np.array(["A", "B", "C", "D"]))
    save(os.path.join(bad("choice_len"), "spikes.npy"), counts((16, 2, 3), np.uint8))
    save(os.path.join(bad("choice_len"), "choice.npy"), np.ones(15, dtype=np.int8))
    save(os.path.join(bad("empty"), "spikes.npy"), np.zeros((0, 5, 3), dtype=np.uint8))
    save(os.path.join(bad("few_trials"), "spikes.npy"), counts((15, 2, 3), np.uint8))

    with open(os.path.join(ROOT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=None, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
