//! Bits per spike against `nlb_tools` itself: `fixtures/nlb_bps.json` holds arrays and the
//! values `nlb_tools.evaluation.bits_per_spike` returned for them (pooled), and MtM's per-neuron
//! convention computed by that function neuron by neuron (written by `tools/nlb_vectors.py`).

use ndt::eval::bps::{BpsAccum, accumulate, bits_per_spike, bits_per_spike_per_neuron};
use serde_json::Value;

fn load() -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/nlb_bps.json");
    let text = std::fs::read_to_string(path).expect("fixtures/nlb_bps.json (tools/nlb_vectors.py)");
    let v: Value = serde_json::from_str(&text).expect("valid json");
    v["cases"].as_array().expect("cases").clone()
}

fn arrays(case: &Value) -> (Vec<f64>, Vec<f64>, usize) {
    let shape: Vec<usize> = case["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let rates: Vec<f64> = case["rates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let spikes: Vec<f64> = case["spikes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap_or(f64::NAN))
        .collect();
    assert_eq!(rates.len(), shape.iter().product::<usize>());
    (rates, spikes, *shape.last().unwrap())
}

#[test]
fn pooled_matches_nlb_tools() {
    let cases = load();
    assert!(cases.len() >= 7);
    for case in &cases {
        let (rates, spikes, n) = arrays(case);
        let got = bits_per_spike(&rates, &spikes, n);
        let want = case["pooled"].as_f64().unwrap();
        assert!(
            (got - want).abs() <= 1e-9,
            "{}: pooled {got} vs nlb_tools {want}",
            case["name"]
        );
    }
}

#[test]
fn per_neuron_matches_mtm_convention() {
    for case in &load() {
        let (rates, spikes, n) = arrays(case);
        let got = bits_per_spike_per_neuron(&rates, &spikes, n);
        let want = case["per_neuron"].as_f64().unwrap();
        assert!(
            (got - want).abs() <= 1e-9,
            "{}: per-neuron {got} vs {want}",
            case["name"]
        );
    }
}

#[test]
fn the_edge_cases_are_exercised() {
    // The fixture covers what it claims: zero rates, silent neurons and NaN spikes.
    let cases = load();
    let find = |name: &str| {
        let c = cases.iter().find(|c| c["name"] == name).unwrap();
        arrays(c)
    };
    let (r, _, _) = find("zero_rates");
    assert!(r.contains(&0.0));
    let (_, s, n) = find("silent_neurons");
    let b = accumulate(&find("silent_neurons").0, &s, n).finish();
    assert_eq!(b.n_neurons_used, n - 2);
    let (_, s, _) = find("nan_spikes");
    assert!(s.iter().any(|v| v.is_nan()));
}

#[test]
fn streaming_and_merging_equal_the_array_form() {
    let cases = load();
    let (rates, spikes, n) = arrays(&cases[0]);
    let half = rates.len() / 2 / n * n;
    let mut a = accumulate(&rates[..half], &spikes[..half], n);
    a.merge(&accumulate(&rates[half..], &spikes[half..], n));
    let whole = accumulate(&rates, &spikes, n).finish();
    let merged = a.finish();
    assert!((whole.pooled - merged.pooled).abs() < 1e-12);
    assert!((whole.per_neuron_mean - merged.per_neuron_mean).abs() < 1e-12);
    // Log-rate entry point is exp of the log.
    let mut b = BpsAccum::new(n);
    for (i, (&r, &x)) in rates.iter().zip(&spikes).enumerate() {
        b.add_log_rate(i % n, (r as f32).ln(), x);
    }
    assert!((b.finish().pooled - whole.pooled).abs() < 1e-5);
}
