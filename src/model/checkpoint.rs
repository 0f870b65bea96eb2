//! Checkpoints: one safetensors file, every parameter under its SPEC §2 name as f32, the
//! `ModelConfig` as JSON in metadata key `config`, plus whatever string metadata the caller adds
//! (step, epoch, validation loss, ...). Written atomically; `load` trusts nothing in the file.

use crate::error::{Result, input, internal};
use crate::model::ModelConfig;
use crate::model::params::ParamTable;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Metadata key holding the `ModelConfig` JSON (reserved: a caller's `config` entry is ignored).
pub const CONFIG_KEY: &str = "config";

/// Writes `params` (laid out by `table`, which must be `ParamTable::new(cfg)`) to `path`.
pub fn save(
    path: &Path,
    cfg: &ModelConfig,
    table: &ParamTable,
    params: &[f32],
    meta: &BTreeMap<String, String>,
) -> Result<()> {
    if params.len() != table.total {
        return Err(internal(format!(
            "save {}: {} parameters for a table of {}",
            path.display(),
            params.len(),
            table.total
        )));
    }
    let bytes: Vec<Vec<u8>> = table
        .entries
        .iter()
        .map(|e| bytemuck::cast_slice::<f32, u8>(&params[e.range()]).to_vec())
        .collect();
    let mut views = Vec::with_capacity(table.entries.len());
    for (e, b) in table.entries.iter().zip(&bytes) {
        let v = TensorView::new(Dtype::F32, e.shape.clone(), b)
            .map_err(|err| internal(format!("tensor {}: {err}", e.name)))?;
        views.push((e.name.clone(), v));
    }
    let mut info: HashMap<String, String> = meta
        .iter()
        .filter(|(k, _)| k.as_str() != CONFIG_KEY)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let json = serde_json::to_string(cfg).map_err(|e| internal(format!("config JSON: {e}")))?;
    info.insert(CONFIG_KEY.into(), json);
    let mut buf = safetensors::tensor::serialize(views, Some(info))
        .map_err(|e| internal(format!("serialize {}: {e}", path.display())))?;
    sort_header(&mut buf).map_err(|m| internal(format!("serialize {}: {m}", path.display())))?;
    crate::fsutil::write_atomic(path, &buf)
}

/// Rewrites a safetensors header in place with its keys sorted (the metadata map is a
/// `HashMap`, whose order changes from one map to the next), so that the same checkpoint or
/// resume state is always the same bytes. The sorted header has the same length: the same keys and values in
/// another order; its padding stays.
pub(crate) fn sort_header(buf: &mut [u8]) -> std::result::Result<(), String> {
    let n = buf
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or("no header length")?;
    let header = buf.get(8..8 + n).ok_or("header past the end")?;
    let text = std::str::from_utf8(header).map_err(|e| e.to_string())?;
    // serde_json's maps are BTreeMaps: parsing and writing again sorts every object's keys.
    let v: serde_json::Value = serde_json::from_str(text.trim_end()).map_err(|e| e.to_string())?;
    let sorted = serde_json::to_string(&v).map_err(|e| e.to_string())?;
    let trimmed = text.trim_end().len();
    if sorted.len() != trimmed {
        return Err(format!(
            "the sorted header has {} bytes, the written one {trimmed}",
            sorted.len()
        ));
    }
    buf[8..8 + trimmed].copy_from_slice(sorted.as_bytes());
    Ok(())
}

/// Reads a checkpoint: its config, the flat parameters (`ParamTable::new(&config)` layout) and the
/// caller metadata (without `config`). Rejects unknown or missing tensors, wrong dtypes and shapes,
/// a config that is not valid, non-finite parameters, and files that are not safetensors (or not
/// regular files: `fsutil::read_regular`), naming the file.
pub fn load(path: &Path) -> Result<(ModelConfig, Vec<f32>, BTreeMap<String, String>)> {
    let buf = crate::fsutil::read_regular(path)?;
    let st = SafeTensors::deserialize(&buf)
        .map_err(|e| input(path, format!("not a valid safetensors file ({e})")))?;
    let (_, header) = SafeTensors::read_metadata(&buf)
        .map_err(|e| input(path, format!("not a valid safetensors file ({e})")))?;
    let mut meta: BTreeMap<String, String> = header
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let json = meta
        .remove(CONFIG_KEY)
        .ok_or_else(|| input(path, "no 'config' in the safetensors metadata"))?;
    let cfg: ModelConfig = serde_json::from_str(&json).map_err(|e| {
        input(
            path,
            format!("metadata 'config' is not a model config: {e}"),
        )
    })?;
    validate_config(&cfg).map_err(|m| input(path, format!("metadata 'config': {m}")))?;
    let table = ParamTable::new(&cfg);
    for (name, view) in st.iter() {
        let e = table.get(name).ok_or_else(|| {
            input(
                path,
                format!("unknown tensor '{name}' (not a parameter of the config in its metadata)"),
            )
        })?;
        if view.dtype() != Dtype::F32 {
            return Err(input(
                path,
                format!("tensor '{name}' has dtype {:?}, expected F32", view.dtype()),
            ));
        }
        if view.shape() != e.shape.as_slice() {
            return Err(input(
                path,
                format!(
                    "tensor '{name}' has shape {:?}, the config says {:?}",
                    view.shape(),
                    e.shape
                ),
            ));
        }
    }
    if let Some(e) = table.entries.iter().find(|e| st.tensor(&e.name).is_err()) {
        return Err(input(path, format!("missing tensor '{}'", e.name)));
    }
    let mut params = vec![0f32; table.total];
    for e in &table.entries {
        let view = st
            .tensor(&e.name)
            .map_err(|err| input(path, format!("tensor '{}': {err}", e.name)))?;
        for (x, b) in params[e.range()]
            .iter_mut()
            .zip(view.data().chunks_exact(4))
        {
            *x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        if let Some(k) = params[e.range()].iter().position(|x| !x.is_finite()) {
            return Err(input(
                path,
                format!(
                    "tensor '{}' holds a non-finite value ({} at element {k}); a checkpoint \
                     of a diverged model cannot be used",
                    e.name,
                    params[e.offset + k]
                ),
            ));
        }
    }
    Ok((cfg, params, meta))
}

/// Checks that a config describes a model that can exist.
pub fn validate_config(cfg: &ModelConfig) -> std::result::Result<(), String> {
    let dims = [
        ("d_model", cfg.d_model),
        ("d_tok", cfg.d_tok),
        ("d_embed_hidden", cfg.d_embed_hidden),
        ("n_heads", cfg.n_heads),
        ("d_ff", cfg.d_ff),
        ("n_bins", cfg.n_bins),
    ];
    if let Some((k, _)) = dims.iter().find(|(_, v)| *v == 0) {
        return Err(format!("{k} is 0"));
    }
    // Bounds that keep every tensor size far from overflow.
    const MAX_DIM: usize = 1 << 20;
    if let Some((k, v)) = dims.iter().find(|(_, v)| *v > MAX_DIM) {
        return Err(format!("{k} = {v} is larger than {MAX_DIM}"));
    }
    if cfg.n_layers > 4096 {
        return Err(format!("n_layers = {} is larger than 4096", cfg.n_layers));
    }
    // Session ids name tensors and, through evaluations and sweeps, files (SPEC §9).
    for sid in cfg.sessions.keys() {
        crate::store::check_id("session id", sid)?;
    }
    if let Some((sid, n)) = cfg.sessions.iter().find(|(_, n)| **n > MAX_DIM) {
        return Err(format!(
            "session '{sid}' has {n} neurons, more than {MAX_DIM}"
        ));
    }
    if !cfg.d_model.is_multiple_of(cfg.n_heads) {
        return Err(format!(
            "d_model {} is not a multiple of n_heads {}",
            cfg.d_model, cfg.n_heads
        ));
    }
    if !(cfg.ln_eps.is_finite() && cfg.ln_eps > 0.0) {
        return Err(format!("ln_eps {} is not a positive number", cfg.ln_eps));
    }
    if let Some((sid, _)) = cfg.sessions.iter().find(|(_, n)| **n == 0) {
        return Err(format!("session '{sid}' has 0 neurons"));
    }
    // Every use builds a backend holding parameters, gradients and both moments: refuse a
    // model that cannot fit before anything is allocated (training checks its batch size too).
    cfg.check_memory(1)
}

/// Copies every tensor of `src` (laid out for `src_cfg`) whose name and shape also exist in
/// `dst_cfg` into `dst`: the core when the dimensions agree, and the sessions both configs hold.
/// Returns the number of tensors copied.
pub fn transfer(
    src_cfg: &ModelConfig,
    src: &[f32],
    dst_cfg: &ModelConfig,
    dst: &mut [f32],
) -> usize {
    let st = ParamTable::new(src_cfg);
    let dt = ParamTable::new(dst_cfg);
    let mut n = 0;
    for e in &dt.entries {
        if let Some(s) = st.get(&e.name).filter(|s| s.shape == e.shape) {
            dst[e.range()].copy_from_slice(&src[s.range()]);
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_checkpoint_is_always_the_same_bytes_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("ndt-ckpt-bytes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = ModelConfig {
            d_model: 8,
            d_tok: 4,
            d_embed_hidden: 8,
            n_layers: 1,
            n_heads: 2,
            d_ff: 8,
            n_bins: 3,
            ln_eps: 1e-5,
            sessions: BTreeMap::from([("a".to_string(), 2), ("b".to_string(), 3)]),
        };
        let table = ParamTable::new(&cfg);
        let params: Vec<f32> = (0..table.total).map(|i| i as f32 * 0.25).collect();
        let meta: BTreeMap<String, String> = (0..12)
            .map(|i| (format!("key{i}"), format!("value {i}")))
            .collect();
        let mut files = Vec::new();
        for i in 0..6 {
            let path = dir.join(format!("c{i}.safetensors"));
            save(&path, &cfg, &table, &params, &meta).unwrap();
            files.push(std::fs::read(&path).unwrap());
            let (c, p, m) = load(&path).unwrap();
            assert_eq!((c, p, m), (cfg.clone(), params.clone(), meta.clone()));
        }
        assert!(
            files.iter().all(|f| *f == files[0]),
            "checkpoint bytes differ between saves"
        );
        // The header is sorted JSON: the metadata object first, its keys in order.
        let n = u64::from_le_bytes(files[0][..8].try_into().unwrap()) as usize;
        let header = std::str::from_utf8(&files[0][8..8 + n]).unwrap();
        assert!(
            header.starts_with("{\"__metadata__\":{\"config\":"),
            "{header}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_checkpoint_whose_session_id_breaks_the_id_rule_is_refused() {
        let dir = std::env::temp_dir().join(format!("ndt-ckpt-ids-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (sid, ok) in [("a-1", true), ("/../../../../x", false), ("..", false)] {
            let cfg = ModelConfig {
                d_model: 8,
                d_tok: 4,
                d_embed_hidden: 8,
                n_layers: 1,
                n_heads: 2,
                d_ff: 8,
                n_bins: 3,
                ln_eps: 1e-5,
                sessions: BTreeMap::from([(sid.to_string(), 2)]),
            };
            let table = ParamTable::new(&cfg);
            let path = dir.join("c.safetensors");
            save(
                &path,
                &cfg,
                &table,
                &vec![0.0; table.total],
                &BTreeMap::new(),
            )
            .unwrap();
            match load(&path) {
                Ok(_) => assert!(ok, "{sid} accepted"),
                Err(e) => {
                    assert!(!ok, "{sid}: {e}");
                    assert_eq!(e.exit_code(), 1);
                    let msg = e.to_string();
                    assert!(
                        msg.contains("c.safetensors") && msg.contains("session id"),
                        "{msg}"
                    );
                }
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
