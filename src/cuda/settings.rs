//! The CUDA backend's settings: which device, which precision, the kernel emulator, and the
//! switches kept for A/B measurements. One value, read from the environment once, at the command
//! line layer (`Settings::from_env`), and passed down explicitly: nothing below it reads these
//! variables. `Settings::default()` is the backend a user gets with none of them set.
//!
//! Left to the places that use them, because they locate tools on the machine rather than change
//! what is computed: `NDT_NVRTC_LIB`, `VIRTUAL_ENV` and the CUDA paths (`nvrtc_load`), the kernel
//! cache folder (`NDT_KERNEL_CACHE`, `XDG_CACHE_HOME`, `HOME`: `nvrtc::cache_dir`) and the
//! emulator's C++ compiler (`CXX`: `emu`).

use super::emu::Order;
use super::gemm::Precision;
use crate::error::{Error, Result};

/// The settings of the CUDA backend (docs/cuda.md, Settings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Device ordinal (`NDT_CUDA_DEVICE`, default 0).
    pub ordinal: usize,
    /// Precision of the products (`NDT_CUDA_PRECISION`: `bf16`, the default, or `f32`).
    pub precision: Precision,
    /// The kernel emulator instead of a GPU, with the order in which the threads of a block run
    /// (`NDT_CUDA_EMU`: `1` first to last, `reverse` last to first).
    pub emulator: Option<Order>,
    /// Worker threads of the emulator per launch (`NDT_CUDA_EMU_THREADS`; None: one per core).
    pub emulator_threads: Option<u32>,
    /// The switches of the backend itself.
    pub backend: Switches,
    /// The switches of the bf16 products.
    pub gemm: GemmSwitches,
}

/// Ways of running a training step that give the same results, kept to measure one against the
/// other in the same build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Switches {
    /// Replay a captured graph per step (`NDT_CUDA_GRAPHS=0` launches kernel by kernel).
    pub graphs: bool,
    /// Keep every layer's attention probabilities for the backward (`NDT_ATTENTION_KEEP=1`).
    pub keep_attention: bool,
    /// The fused attention forward (`NDT_ATTENTION_UNFUSED=1`: two products and a softmax).
    pub fused_attention: bool,
    /// Store the activations only products read as bf16 in bf16 precision (`NDT_STORE_F32=1`:
    /// every saved activation as f32).
    pub bf16_store: bool,
}

/// The earlier ways of `gemm_bf16`, kept to measure the newer ones against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GemmSwitches {
    /// Read operands one element at a time instead of as quads (`NDT_GEMM_SCALAR_LOADS=1`).
    pub scalar_loads: bool,
    /// Load the mma fragments with 32-bit shared loads instead of `ldmatrix`
    /// (`NDT_GEMM_NO_LDMATRIX=1`).
    pub no_ldmatrix: bool,
}

impl Default for Switches {
    fn default() -> Switches {
        Switches {
            graphs: true,
            keep_attention: false,
            fused_attention: true,
            bf16_store: true,
        }
    }
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            ordinal: 0,
            precision: Precision::Bf16,
            emulator: None,
            emulator_threads: None,
            backend: Switches::default(),
            gemm: GemmSwitches::default(),
        }
    }
}

impl Settings {
    /// The settings from this process's environment. A variable with a value that means
    /// nothing is a usage error naming it.
    pub fn from_env() -> Result<Settings> {
        Settings::from_vars(|k| std::env::var(k).ok())
    }

    /// The settings from `var` (a variable's value, None when unset).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Settings> {
        let flag = |k: &str| var(k).map(|v| v.trim().to_string());
        let is = |k: &str, v: &str| flag(k).is_some_and(|x| x == v);
        Ok(Settings {
            ordinal: match flag("NDT_CUDA_DEVICE") {
                Some(s) if !s.is_empty() => s.parse().map_err(|_| {
                    Error::Usage(format!(
                        "NDT_CUDA_DEVICE={s}: expected a device number such as 0"
                    ))
                })?,
                _ => 0,
            },
            precision: match flag("NDT_CUDA_PRECISION").as_deref() {
                None | Some("") | Some("bf16") => Precision::Bf16,
                Some("f32") => Precision::F32,
                Some(other) => {
                    return Err(Error::Usage(format!(
                        "NDT_CUDA_PRECISION={other}: expected bf16 or f32"
                    )));
                }
            },
            emulator: match var("NDT_CUDA_EMU").as_deref() {
                None | Some("") | Some("0") => None,
                Some("1") => Some(Order::FirstToLast),
                Some("reverse") => Some(Order::LastToFirst),
                Some(other) => {
                    return Err(Error::Usage(format!(
                        "NDT_CUDA_EMU={other}: expected 1 (the kernel emulator), reverse (the \
                         emulator, threads last to first) or 0 (off)"
                    )));
                }
            },
            emulator_threads: match flag("NDT_CUDA_EMU_THREADS") {
                None => None,
                Some(v) => match v.parse::<u32>() {
                    Ok(n) if (1..=1024).contains(&n) => Some(n),
                    _ => {
                        return Err(Error::Usage(format!(
                            "NDT_CUDA_EMU_THREADS={v}: expected a number of threads from 1 to \
                             1024"
                        )));
                    }
                },
            },
            backend: Switches {
                graphs: !is("NDT_CUDA_GRAPHS", "0"),
                keep_attention: is("NDT_ATTENTION_KEEP", "1"),
                fused_attention: !is("NDT_ATTENTION_UNFUSED", "1"),
                bf16_store: !is("NDT_STORE_F32", "1"),
            },
            gemm: GemmSwitches {
                scalar_loads: is("NDT_GEMM_SCALAR_LOADS", "1"),
                no_ldmatrix: is("NDT_GEMM_NO_LDMATRIX", "1"),
            },
        })
    }

    /// The worker threads of the emulator: the setting, else one per core.
    pub fn emulator_workers(&self) -> u32 {
        self.emulator_threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(1024) as u32)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<Settings> {
        Settings::from_vars(|k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn no_variables_is_the_default() {
        assert_eq!(from(&[]).unwrap(), Settings::default());
        let d = Settings::default();
        assert!(d.backend.graphs && d.backend.fused_attention && d.backend.bf16_store);
        assert!(!d.backend.keep_attention && !d.gemm.scalar_loads && !d.gemm.no_ldmatrix);
        assert_eq!(d.precision, Precision::Bf16);
        assert_eq!(d.emulator, None);
    }

    #[test]
    fn every_variable_is_read() {
        let s = from(&[
            ("NDT_CUDA_DEVICE", " 3 "),
            ("NDT_CUDA_PRECISION", "f32"),
            ("NDT_CUDA_EMU", "reverse"),
            ("NDT_CUDA_EMU_THREADS", "7"),
            ("NDT_CUDA_GRAPHS", "0"),
            ("NDT_ATTENTION_KEEP", "1"),
            ("NDT_ATTENTION_UNFUSED", "1"),
            ("NDT_STORE_F32", "1"),
            ("NDT_GEMM_SCALAR_LOADS", "1"),
            ("NDT_GEMM_NO_LDMATRIX", "1"),
        ])
        .unwrap();
        assert_eq!(s.ordinal, 3);
        assert_eq!(s.precision, Precision::F32);
        assert_eq!(s.emulator, Some(Order::LastToFirst));
        assert_eq!(s.emulator_workers(), 7);
        assert_eq!(
            s.backend,
            Switches {
                graphs: false,
                keep_attention: true,
                fused_attention: false,
                bf16_store: false
            }
        );
        assert!(s.gemm.scalar_loads && s.gemm.no_ldmatrix);
        assert_eq!(
            from(&[("NDT_CUDA_EMU", "1")]).unwrap().emulator,
            Some(Order::FirstToLast)
        );
        assert_eq!(from(&[("NDT_CUDA_EMU", "0")]).unwrap().emulator, None);
    }

    #[test]
    fn a_meaningless_value_is_a_usage_error_naming_the_variable() {
        for (k, v) in [
            ("NDT_CUDA_DEVICE", "gpu0"),
            ("NDT_CUDA_PRECISION", "fp16"),
            ("NDT_CUDA_EMU", "yes"),
            ("NDT_CUDA_EMU_THREADS", "0"),
            ("NDT_CUDA_EMU_THREADS", "many"),
        ] {
            let e = from(&[(k, v)]).unwrap_err();
            assert_eq!(e.exit_code(), 1, "{k}={v}");
            assert!(e.to_string().contains(&format!("{k}={v}")), "{k}={v}: {e}");
        }
    }
}
