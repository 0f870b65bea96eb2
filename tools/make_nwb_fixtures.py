#!/usr/bin/env python3
"""Writes the NWB import fixtures in fixtures/nwb/ with pynwb (tools/setup.sh --reference).

    .venv/bin/python tools/make_nwb_fixtures.py

The files are small (no cached specification) and committed; the tests bin their spikes again
with numpy, independently of ndt, so nothing here computes an expected value.

Good files:
  trials.nwb      3 electrode groups (VISp, CA1, LP) over 6 electrodes, 9 units, 20 trials with
                  start_time / stop_time / stim_on_time / choice (one NaN); spike times gzip-compressed and chunked
                  (H5DataIO compression="gzip", chunks), the ragged index chunked too; a units column
                  `acronym` (strings) naming another region per unit
  no_trials.nwb   2 electrode groups (MOs, ORBl), 5 units over 60 s, no trials table; spike times
                  contiguous
  latest.nwb      no_trials' units written with h5py libver="latest" (superblock v3, object
                  headers v2), spike times gzip-chunked
  empty_units.nwb 4 units over 60 s, the first and third without spikes, no trials
  dense.nwb       1 unit, 16 trials, 300 spikes in the first 10 ms of each (a count above 255)
Bad files, in bad/ (each must be refused):
  unsorted.nwb        one unit's spike times not sorted
  nan.nwb             one spike time NaN
  index_range.nwb     the last spike_times_index entry past the end of spike_times
  index_order.nwb     spike_times_index decreasing
  no_electrodes.nwb   units without an `electrodes` column
  trial_outside.nwb   one trial's start_time after the last spike of the recording
Truncated files are made by the tests from the good ones.

Beside each good file (and the real recording real/A8604-211122.nwb, see fixtures/nwb/README.md)
it writes `<name>.h5py.npz`: what h5py (libhdf5) reads from the file -- spike_times, the index,
unit ids, each unit's electrode location (first electrode), the units' string columns (`units_*`)
and the trials' numeric columns (`trials_*`). The tests bin those spikes with numpy and compare,
so ndt's HDF5 reading is checked against libhdf5's.
"""
import datetime
import os
import shutil
from uuid import UUID

import h5py
import numpy as np
from hdmf.backends.hdf5.h5_utils import H5DataIO
from pynwb import NWBHDF5IO, NWBFile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "nwb")
START = datetime.datetime(2024, 6, 11, 12, 0, 0, tzinfo=datetime.timezone.utc)


def new_file(identifier, session_id=None):
    return NWBFile(
        session_description="ndt import fixture",
        identifier=identifier,
        session_start_time=START,
        file_create_date=START,
        session_id=session_id,
        lab="fixture-lab",
        institution="none",
    )


def add_electrodes(nwb, groups):
    """groups: [(name, location, n_electrodes)] -> electrode row indices per group."""
    dev = nwb.create_device(name="probe")
    rows = {}
    k = 0
    for name, loc, n in groups:
        g = nwb.create_electrode_group(name=name, description=name, location=loc, device=dev)
        rows[name] = []
        for _ in range(n):
            nwb.add_electrode(group=g, location=loc, x=0.0, y=float(k), z=0.0)
            rows[name].append(k)
            k += 1
    return rows


def spikes(rng, rate, t_end):
    n = rng.poisson(rate * t_end)
    return np.sort(rng.uniform(0.0, t_end, n))


def write_units(nwb, trains, electrodes, compress, extra=None):
    """Units with spike_times from `trains`, one electrode row each; gzip/chunks if `compress`."""
    flat = np.concatenate(trains).astype(np.float64)
    index = np.cumsum([len(t) for t in trains]).astype(np.int64)
    if compress:
        st = H5DataIO(flat, compression="gzip", compression_opts=4, chunks=(64,))
        si = H5DataIO(index, compression="gzip", chunks=(4,))
    else:
        st, si = flat, index
    nwb.units = None
    from pynwb.misc import Units
    from hdmf.common import VectorData, VectorIndex, DynamicTableRegion

    spike_times = VectorData(name="spike_times", description="spike times", data=st)
    spike_index = VectorIndex(name="spike_times_index", data=si, target=spike_times)
    region = DynamicTableRegion(
        name="electrodes",
        description="electrode of each unit",
        data=np.asarray(electrodes, dtype=np.int64),
        table=nwb.electrodes,
    )
    # In NWB a unit may sit on several electrodes: `electrodes` is itself ragged.
    region_index = VectorIndex(
        name="electrodes_index", data=np.arange(1, len(trains) + 1), target=region
    )
    columns = [spike_times, spike_index, region, region_index]
    if extra:
        for name, values in extra.items():
            columns.append(VectorData(name=name, description=name, data=values))
    units = Units(
        name="units",
        description="sorted units",
        id=list(range(100, 100 + len(trains))),
        columns=columns,
    )
    nwb.units = units


def save(nwb, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(path):
        os.remove(path)
    with NWBHDF5IO(path, "w") as io:
        io.write(nwb, cache_spec=False)


def trials_file(path, identifier="fixture-trials", mutate=None):
    rng = np.random.default_rng(20240611)
    nwb = new_file(identifier, session_id="sess-01")
    rows = add_electrodes(nwb, [("shank0", "VISp", 2), ("shank1", "CA1", 2), ("shank2", "LP", 2)])
    t_end = 70.0
    trains = [spikes(rng, r, t_end) for r in (2, 5, 12, 1, 4, 8, 18, 1, 6)]
    electrodes = [0, 1, 2, 3, 4, 5, 0, 2, 4]
    acronym = ["VISp1", "VISp2/3", "CA1", "DG", "LP", "LP", "VISp4", "CA3", "LGd"]
    # 20 trials, 3.3 s apart with jitter; the stimulus 0.1 to 0.2 s after the start.
    starts = 2.0 + 3.3 * np.arange(20) + rng.uniform(0, 0.1, 20)
    stim = starts + rng.uniform(0.1, 0.2, 20)
    stops = starts + 3.0
    if mutate:
        trains, starts, stim, stops = mutate(trains, starts, stim, stops)
    # IBL's convention: -1 / +1 the two wheel turns, 0 no-go; NaN unknown.
    choice = rng.choice([-1.0, 0.0, 1.0], len(starts))
    choice[5] = np.nan
    nwb.add_trial_column(name="stim_on_time", description="stimulus onset")
    nwb.add_trial_column(name="choice", description="response: -1 CCW, +1 CW, 0 no-go")
    for a, b, s, c in zip(starts, stops, stim, choice):
        nwb.add_trial(
            start_time=float(a), stop_time=float(b), stim_on_time=float(s), choice=float(c)
        )
    write_units(nwb, trains, electrodes, compress=True, extra={"acronym": acronym})
    save(nwb, path)
    return rows


def sidecar(path):
    """What h5py reads from `path`, for the tests' independent binning."""
    out = {}
    with h5py.File(path, "r") as f:
        u = f["units"]
        out["spike_times"] = u["spike_times"][:]
        out["index"] = u["spike_times_index"][:].astype(np.int64)
        out["ids"] = u["id"][:].astype(np.int64)
        if "electrodes" in u:
            rows = u["electrodes"][:]
            if "electrodes_index" in u:
                ends = u["electrodes_index"][:].astype(np.int64)
                starts = np.concatenate([[0], ends[:-1]])
                rows = rows[starts]
            loc = f["general/extracellular_ephys/electrodes/location"][:]
            out["location"] = np.array([loc[r].decode() for r in rows])
        for c in u.keys():
            d = u[c]
            if isinstance(d, h5py.Dataset) and d.dtype.kind == "O" and d.ndim == 1:
                v = d[:]
                if len(v) and isinstance(v[0], bytes):
                    out["units_" + c] = np.array([x.decode() for x in v])
        if "intervals/trials" in f:
            t = f["intervals/trials"]
            for c in t.keys():
                if t[c].dtype.kind in "fiu":
                    out["trials_" + c] = t[c][:].astype(np.float64)
    np.savez(path[: -len(".nwb")] + ".h5py.npz", **out)


def main():
    if os.path.isdir(ROOT):
        for f in os.listdir(ROOT):
            p = os.path.join(ROOT, f)
            if f.endswith(".nwb") or f.endswith(".h5py.npz"):
                os.remove(p)
        shutil.rmtree(os.path.join(ROOT, "bad"), ignore_errors=True)

    trials_file(os.path.join(ROOT, "trials.nwb"))

    # No trials: fixed windows.
    rng = np.random.default_rng(7)
    # Its identifier is not a usable session id (spaces, a slash): importing it needs --id.
    nwb = new_file("fixture no-trials 2024/06/11")
    add_electrodes(nwb, [("a", "MOs", 2), ("b", "ORBl", 1)])
    trains = [spikes(rng, r, 60.0) for r in (6, 2, 9, 3, 5)]
    write_units(nwb, trains, [0, 1, 2, 2, 0], compress=False)
    save(nwb, os.path.join(ROOT, "no_trials.nwb"))

    # The same units written with libver="latest": superblock v3 and version-2 object headers,
    # as newer writers produce.
    rng = np.random.default_rng(7)
    nwb = new_file("fixture-latest")
    add_electrodes(nwb, [("a", "MOs", 2), ("b", "ORBl", 1)])
    trains = [spikes(rng, r, 60.0) for r in (6, 2, 9, 3, 5)]
    write_units(nwb, trains, [0, 1, 2, 2, 0], compress=True)
    p = os.path.join(ROOT, "latest.nwb")
    if os.path.exists(p):
        os.remove(p)
    with h5py.File(p, "w", libver="latest") as f:
        with NWBHDF5IO(file=f, mode="w") as io:
            io.write(nwb, cache_spec=False)

    # Units without spikes (the first and the third): dropped, and counted.
    rng = np.random.default_rng(11)
    nwb = new_file("fixture-empty-units")
    add_electrodes(nwb, [("a", "MOs", 1), ("b", "ORBl", 1)])
    trains = [np.zeros(0), spikes(rng, 8, 60.0), np.zeros(0), spikes(rng, 4, 60.0)]
    write_units(nwb, trains, [0, 1, 0, 1], compress=False)
    save(nwb, os.path.join(ROOT, "empty_units.nwb"))

    # Dense: 300 spikes in the first 10 ms after each trial's start (a count of 300 in one bin).
    nwb = new_file("fixture-dense")
    add_electrodes(nwb, [("a", "VISp", 1)])
    starts = 1.0 + 3.0 * np.arange(16)
    train = np.concatenate([a + np.linspace(0.0, 0.01, 300, endpoint=False) for a in starts])
    # One last spike at 49 s, so that the recording covers the last trial's window.
    train = np.concatenate([train, [starts[-1] + 3.0]])
    for a in starts:
        nwb.add_trial(start_time=float(a), stop_time=float(a + 2.9))
    write_units(nwb, [train], [0], compress=True)
    save(nwb, os.path.join(ROOT, "dense.nwb"))

    bad = os.path.join(ROOT, "bad")

    def unsorted(tr, a, s, b):
        tr = [t.copy() for t in tr]
        tr[2][10], tr[2][11] = tr[2][11], tr[2][10]
        return tr, a, s, b

    def nan(tr, a, s, b):
        tr = [t.copy() for t in tr]
        tr[4][3] = np.nan
        return tr, a, s, b

    def outside(tr, a, s, b):
        a = a.copy()
        s = s.copy()
        b = b.copy()
        a[-1], s[-1], b[-1] = 500.0, 500.2, 503.5
        return tr, a, s, b

    trials_file(os.path.join(bad, "unsorted.nwb"), mutate=unsorted)
    trials_file(os.path.join(bad, "nan.nwb"), mutate=nan)
    trials_file(os.path.join(bad, "trial_outside.nwb"), mutate=outside)

    # Index faults: written with pynwb, then the index rewritten with h5py.
    for name, fix in [
        ("index_range.nwb", lambda ix: np.concatenate([ix[:-1], [ix[-1] + 5]])),
        ("index_order.nwb", lambda ix: np.concatenate([ix[:3], [ix[1]], ix[4:]])),
    ]:
        p = os.path.join(bad, name)
        trials_file(p)
        with h5py.File(p, "r+") as f:
            ix = f["units/spike_times_index"][:]
            f["units/spike_times_index"][:] = fix(ix)

    p = os.path.join(bad, "no_electrodes.nwb")
    trials_file(p)
    with h5py.File(p, "r+") as f:
        del f["units/electrodes"]
        cols = [c for c in f["units"].attrs["colnames"] if c != "electrodes"]
        f["units"].attrs["colnames"] = cols

    for name in [
        "trials.nwb",
        "no_trials.nwb",
        "latest.nwb",
        "empty_units.nwb",
        "dense.nwb",
        "real/A8604-211122.nwb",
    ]:
        sidecar(os.path.join(ROOT, name))

    for dirpath, _, files in os.walk(ROOT):
        for f in sorted(files):
            if f.endswith(".nwb"):
                p = os.path.join(dirpath, f)
                print(f"{os.path.relpath(p, ROOT)}: {os.path.getsize(p)} bytes")


if __name__ == "__main__":
    main()
