#!/usr/bin/env python3
"""Writes the fixtures of `ndt import alf` into fixtures/alf/ (run from anywhere).

Two small IBL sessions laid out as the ONE API downloads them (ALF folders), written with numpy
and pyarrow the way the IBL's own tools write them (np.save of float64/int arrays, pandas-style
parquet tables, a `uuids` CSV):

good/cortexlab/Subjects/SW001/2023-01-05/001   new layout
    alf/_ibl_trials.table.pqt                  one table, intervals as intervals_0 / intervals_1
    alf/probe00/pykilosort/                    spikes.*, clusters.channels/metrics/uuids,
                                               channels.brainLocationIds_ccf_2017 (one negative
                                               = left-hemisphere id); spikes.* of an older sorting
                                               at the collection root and in #2023-01-01#, the
                                               current ones in #2024-05-06# (the newest wins)
    alf/probe01/pykilosort/                    spikes.*, clusters.channels (uint32 spike
                                               clusters), locations in alf/probe01/electrodeSites.*
good/SW002/2023-02-10/002                      old layout
    alf/task_00/_ibl_trials.<attribute>.npy    one file per attribute, intervals [n, 2]
    alf/probe00/                               spikes.* directly in the probe folder

Both probes of SW001 have clusters without spikes, among them the last cluster, so a binning
keyed by "clusters that spiked" would shift the labels. Trials carry NaN times, no-go choices and
reaction times / lengths outside the IBL brain-wide-map bounds, each planted on a known trial.

good/expected.json  per session: the planted trial drops by reason, the kept trial rows, the
units (probe, cluster id, uuid, acronym) in import order, the choices of the kept trials and the
files holding the current spikes. Acronyms come from the small table ACRONYM below (Allen CCF
2017 ids), not from the importer's table.

Only numpy and pyarrow are needed: python tools/make_alf_fixtures.py
"""

import json
import os
import shutil
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "alf")

# A few Allen CCF 2017 structures (id -> acronym), from the Allen Mouse Brain Atlas ontology.
ACRONYM = {382: "CA1", 385: "VISp", 593: "VISp1", 726: "DG", 1020: "PO", 218: "LP", 0: "void"}

NAN_EXCLUDE = ["stimOn_times", "choice", "feedback_times", "probabilityLeft",
               "firstMovement_times", "feedbackType"]


def save(path, arr):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path, arr)


def trial_times(rng, n, first=5.0, gap=4.2, close=()):
    """stimOn times; trials in `close` start 1.0 s after the previous one (windows overlap)."""
    t, out = first, []
    for i in range(n):
        if i > 0:
            t += 1.0 if i in close else gap + rng.uniform(0.0, 0.5)
        out.append(t)
    return np.array(out)


def make_trials(rng, n, close=()):
    stim = trial_times(rng, n, close=close)
    go = stim + 0.01
    rt = rng.uniform(0.2, 0.9, n)
    first_move = stim + rt
    response = first_move + 0.1
    feedback = response + 0.001
    choice = rng.choice([-1.0, 1.0], n)
    fb_type = rng.choice([-1.0, 1.0], n, p=[0.3, 0.7])
    side = rng.choice([0, 1], n)
    contrast = rng.choice([0.0, 0.0625, 0.25, 1.0], n)
    c_left = np.where(side == 0, contrast, np.nan)
    c_right = np.where(side == 1, contrast, np.nan)
    p_left = rng.choice([0.2, 0.5, 0.8], n)
    start = stim - 0.6
    end = feedback + 1.0
    return dict(stimOn_times=stim, goCue_times=go, response_times=response,
                feedback_times=feedback, firstMovement_times=first_move, choice=choice,
                feedbackType=fb_type, contrastLeft=c_left, contrastRight=c_right,
                probabilityLeft=p_left, intervals_0=start, intervals_1=end)


def spikes(rng, n_clusters, silent, t_end, events, burst_cluster):
    """Sorted spike times and clusters: background firing plus event-locked bursts."""
    times, clus = [], []
    for c in range(n_clusters):
        if c in silent:
            continue
        rate = 1.0 + 1.5 * (c % 4)
        k = rng.poisson(rate * t_end)
        times.append(rng.uniform(0.0, t_end, k))
        clus.append(np.full(k, c))
        # Event-locked responses, some several spikes in one 20 ms bin.
        for e in events:
            m = rng.poisson(3)
            times.append(e + rng.uniform(0.0, 0.3, m))
            clus.append(np.full(m, c))
    # A dense burst: 9 spikes of one cluster inside 5 ms after the first event.
    times.append(events[0] + 0.1 + np.linspace(0.0, 0.005, 9))
    clus.append(np.full(9, burst_cluster))
    t = np.concatenate(times)
    c = np.concatenate(clus)
    order = np.argsort(t, kind="stable")
    return t[order], c[order]


def drop_reason(tr, t):
    """The first filter trial t fails, as the importer orders them (None = kept)."""
    if np.isnan(tr["stimOn_times"][t]):
        return "nan_stimOn_times"
    for c in NAN_EXCLUDE:
        if np.isnan(tr[c][t]):
            return "nan_" + c
    if tr["choice"][t] == 0:
        return "no_choice"
    rt = tr["firstMovement_times"][t] - tr["stimOn_times"][t]
    if rt < 0.08:
        return "rt_below_min"
    if rt > 2.0:
        return "rt_above_max"
    if tr["feedback_times"][t] - tr["goCue_times"][t] > 10.0:
        return "trial_too_long"
    return None


def summary(tr):
    dropped, kept = {}, []
    for t in range(len(tr["stimOn_times"])):
        r = drop_reason(tr, t)
        if r is None:
            kept.append(t)
        else:
            dropped[r] = dropped.get(r, 0) + 1
    return dropped, kept


def metrics_table(labels):
    n = len(labels)
    return pa.table({
        "cluster_id": pa.array(np.arange(n), pa.int64()),
        "label": pa.array(labels, pa.float64()),
        "firing_rate": pa.array(np.linspace(0.5, 9.0, n), pa.float64()),
    })


def uuids_csv(path, n, rng):
    ids = [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n)]
    with open(path, "w") as f:
        f.write("uuids\n")
        for u in ids:
            f.write(u + "\n")
    return ids


def session_a(rng, root):
    """New layout, two probes, a revision folder, table trials."""
    base = os.path.join(root, "cortexlab", "Subjects", "SW001", "2023-01-05", "001")
    n = 24
    tr = make_trials(rng, n, close=(18,))
    tr["stimOn_times"][2] = np.nan                            # nan_stimOn_times
    tr["choice"][5] = 0.0                                     # no_choice
    tr["firstMovement_times"][7] = tr["stimOn_times"][7] + 0.05   # rt_below_min
    tr["firstMovement_times"][9] = tr["stimOn_times"][9] + 2.5    # rt_above_max
    tr["feedback_times"][11] = tr["goCue_times"][11] + 12.0       # trial_too_long
    tr["probabilityLeft"][13] = np.nan                        # nan_probabilityLeft
    tr["firstMovement_times"][15] = np.nan                    # nan_firstMovement_times
    table = pa.table({k: pa.array(v, pa.float64()) for k, v in tr.items()})
    os.makedirs(os.path.join(base, "alf"), exist_ok=True)
    pq.write_table(table, os.path.join(base, "alf", "_ibl_trials.table.pqt"))
    events = tr["stimOn_times"][~np.isnan(tr["stimOn_times"])]
    t_end = float(np.nanmax(tr["stimOn_times"])) + 10.0

    units = []
    files = {}
    # probe00: 10 clusters, 3 and 9 (the last) silent; 6 channels.
    p0 = os.path.join(base, "alf", "probe00", "pykilosort")
    times, clus = spikes(rng, 10, {3, 9}, t_end, events, burst_cluster=4)
    rev = os.path.join(p0, "#2024-05-06#")
    save(os.path.join(rev, "spikes.times.npy"), times)
    save(os.path.join(rev, "spikes.clusters.npy"), clus.astype(np.int64))
    # Older sortings: shifted times, other lengths; they must lose to #2024-05-06#.
    for old in [p0, os.path.join(p0, "#2023-01-01#")]:
        save(os.path.join(old, "spikes.times.npy"), times[::2] + 0.25)
        save(os.path.join(old, "spikes.clusters.npy"), clus[::2].astype(np.int64))
    ch0 = np.array([0, 0, 1, 2, 2, 3, 4, 5, 5, 1])
    save(os.path.join(p0, "clusters.channels.npy"), ch0)
    loc0 = np.array([385, -385, 593, 382, -726, 0])     # negative = left hemisphere
    save(os.path.join(p0, "channels.brainLocationIds_ccf_2017.npy"), loc0)
    labels0 = np.array([1.0, 0.666, 1.0, 1.0, 0.333, 1.0, 0.0, 1.0, 1.0, 1.0])
    pq.write_table(metrics_table(labels0), os.path.join(p0, "clusters.metrics.pqt"))
    uu0 = uuids_csv(os.path.join(p0, "clusters.uuids.csv"), 10, rng)
    files["probe00"] = ["alf/probe00/pykilosort/#2024-05-06#/spikes.times.npy",
                        "alf/probe00/pykilosort/#2024-05-06#/spikes.clusters.npy"]
    for c in range(10):
        units.append(dict(probe="probe00", cluster=c, uuid=uu0[c],
                          acronym=ACRONYM[abs(int(loc0[ch0[c]]))], good=bool(labels0[c] == 1.0)))

    # probe01: 6 clusters, 0 and 5 silent; locations from electrodeSites in alf/probe01.
    p1 = os.path.join(base, "alf", "probe01", "pykilosort")
    times, clus = spikes(rng, 6, {0, 5}, t_end, events, burst_cluster=2)
    save(os.path.join(p1, "spikes.times.npy"), times)
    save(os.path.join(p1, "spikes.clusters.npy"), clus.astype(np.uint32))
    ch1 = np.array([3, 0, 1, 1, 2, 3])
    save(os.path.join(p1, "clusters.channels.npy"), ch1)
    loc1 = np.array([1020, 218, -218, 382])
    save(os.path.join(base, "alf", "probe01", "electrodeSites.brainLocationIds_ccf_2017.npy"),
         loc1)
    labels1 = np.array([1.0, 1.0, 0.0, 1.0, 1.0, 0.666])
    pq.write_table(metrics_table(labels1), os.path.join(p1, "clusters.metrics.pqt"))
    uu1 = uuids_csv(os.path.join(p1, "clusters.uuids.csv"), 6, rng)
    files["probe01"] = ["alf/probe01/pykilosort/spikes.times.npy",
                        "alf/probe01/pykilosort/spikes.clusters.npy"]
    for c in range(6):
        units.append(dict(probe="probe01", cluster=c, uuid=uu1[c],
                          acronym=ACRONYM[abs(int(loc1[ch1[c]]))], good=bool(labels1[c] == 1.0)))

    dropped, kept = summary(tr)
    return dict(dir=os.path.relpath(base, root), id="SW001_2023-01-05_001", subject="SW001",
                lab="cortexlab", layout="table", n_trials=n, dropped=dropped, kept=kept,
                choice=[int(tr["choice"][t]) for t in kept], units=units, spikes=files,
                trials="alf/_ibl_trials.table.pqt")


def session_b(rng, root):
    """Old layout: one .npy per trial attribute in alf/task_00, one probe without sorter folder."""
    base = os.path.join(root, "SW002", "2023-02-10", "002")
    n = 20
    tr = make_trials(rng, n)
    tr["goCue_times"][0] = np.nan          # not filtered by default: trial 0 is kept
    tr["feedbackType"][3] = np.nan         # nan_feedbackType
    tr["choice"][4] = 0.0                  # no_choice
    tdir = os.path.join(base, "alf", "task_00")
    for k, v in tr.items():
        if k.startswith("intervals_"):
            continue
        save(os.path.join(tdir, f"_ibl_trials.{k}.npy"), v)
    save(os.path.join(tdir, "_ibl_trials.intervals.npy"),
         np.stack([tr["intervals_0"], tr["intervals_1"]], axis=1))
    events = tr["stimOn_times"]
    t_end = float(events.max()) + 10.0
    p = os.path.join(base, "alf", "probe00")
    times, clus = spikes(rng, 5, {2}, t_end, events, burst_cluster=1)
    save(os.path.join(p, "spikes.times.npy"), times)
    save(os.path.join(p, "spikes.clusters.npy"), clus.astype(np.int64))
    ch = np.array([0, 1, 1, 2, 0])
    save(os.path.join(p, "clusters.channels.npy"), ch)
    loc = np.array([726, -382, 1020])
    save(os.path.join(p, "channels.brainLocationIds_ccf_2017.npy"), loc)
    units = [dict(probe="probe00", cluster=c, uuid=None, acronym=ACRONYM[abs(int(loc[ch[c]]))],
                  good=None) for c in range(5)]
    dropped, kept = summary(tr)
    return dict(dir=os.path.relpath(base, root), id="SW002_2023-02-10_002", subject="SW002",
                lab="unknown", layout="npy", n_trials=n, dropped=dropped, kept=kept,
                choice=[int(tr["choice"][t]) for t in kept], units=units,
                spikes={"probe00": ["alf/probe00/spikes.times.npy",
                                    "alf/probe00/spikes.clusters.npy"]},
                trials="alf/task_00")


def main():
    rng = np.random.default_rng(20240507)
    good = os.path.join(ROOT, "good")
    shutil.rmtree(ROOT, ignore_errors=True)
    os.makedirs(good)
    sessions = [session_a(rng, good), session_b(rng, good)]
    with open(os.path.join(good, "expected.json"), "w") as f:
        json.dump({"sessions": sessions}, f, indent=1)


if __name__ == "__main__":
    main()
