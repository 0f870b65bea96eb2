//! The kernel sources, embedded in the binary: one `.cu` file per kernel family (the same family
//! names as `src/cpu/`) and the headers they include. `nvrtc::expand` pastes the headers in.

/// One kernel file.
#[derive(Clone, Copy, Debug)]
pub struct KernelFile {
    /// File name under `kernels/`, e.g. `gemm.cu`.
    pub name: &'static str,
    pub text: &'static str,
    /// The `extern "C"` kernels it defines (the compile test checks this list against the PTX).
    pub entries: &'static [&'static str],
}

/// Headers a kernel file may include, by name.
pub const HEADERS: &[(&str, &str)] = &[
    ("rng.cuh", include_str!("../../kernels/rng.cuh")),
    ("common.cuh", include_str!("../../kernels/common.cuh")),
];

macro_rules! kernel_file {
    ($id:ident, $file:literal, [$($e:literal),* $(,)?]) => {
        pub const $id: KernelFile = KernelFile {
            name: $file,
            text: include_str!(concat!("../../kernels/", $file)),
            entries: &[$($e),*],
        };
    };
}

/// The gemm_bf16 kernels of `gemm.cu`, `[variant][scalar, kk, kr, rk, rr]` (the fetch modes of
/// A and B) with the variants: f32 operands, the same with the dropout of A (`_da`), A stored
/// as bf16 (`_hf`), B as bf16 (`_fh`, `_fh_da`), both (`_hh`). The launcher picks from it.
pub const GEMM_BF16_KERNELS: [[&str; 5]; 6] = [
    [
        "gemm_bf16",
        "gemm_bf16_kk",
        "gemm_bf16_kr",
        "gemm_bf16_rk",
        "gemm_bf16_rr",
    ],
    [
        "gemm_bf16_da",
        "gemm_bf16_kk_da",
        "gemm_bf16_kr_da",
        "gemm_bf16_rk_da",
        "gemm_bf16_rr_da",
    ],
    [
        "gemm_bf16_hf",
        "gemm_bf16_kk_hf",
        "gemm_bf16_kr_hf",
        "gemm_bf16_rk_hf",
        "gemm_bf16_rr_hf",
    ],
    [
        "gemm_bf16_fh",
        "gemm_bf16_kk_fh",
        "gemm_bf16_kr_fh",
        "gemm_bf16_rk_fh",
        "gemm_bf16_rr_fh",
    ],
    [
        "gemm_bf16_fh_da",
        "gemm_bf16_kk_fh_da",
        "gemm_bf16_kr_fh_da",
        "gemm_bf16_rk_fh_da",
        "gemm_bf16_rr_fh_da",
    ],
    [
        "gemm_bf16_hh",
        "gemm_bf16_kk_hh",
        "gemm_bf16_kr_hh",
        "gemm_bf16_rk_hh",
        "gemm_bf16_rr_hh",
    ],
];

/// Every kernel of `gemm.cu`: the table above, then `gemm_f32`.
const GEMM_ENTRIES: [&str; 31] = {
    let mut e = [""; 31];
    let mut i = 0;
    while i < 30 {
        e[i] = GEMM_BF16_KERNELS[i / 5][i % 5];
        i += 1;
    }
    e[30] = "gemm_f32";
    e
};

pub const GEMM: KernelFile = KernelFile {
    name: "gemm.cu",
    text: include_str!("../../kernels/gemm.cu"),
    entries: &GEMM_ENTRIES,
};
kernel_file!(LINEAR, "linear.cu", ["col_sum_partial", "col_sum_final"]);
kernel_file!(MLP, "mlp.cu", ["gelu_forward_f32", "gelu_backward_f32"]);
kernel_file!(
    LAYERNORM,
    "layernorm.cu",
    [
        "layernorm_forward_f32",
        "layernorm_affine_f32",
        "layernorm_backward_f32",
        "layernorm_param_partial",
        "layernorm_param_final",
    ]
);
kernel_file!(
    ATTENTION,
    "attention.cu",
    [
        "attention_softmax_forward",
        "attention_softmax_backward",
        "attention_fused_f",
        "attention_fused_h",
    ]
);
kernel_file!(
    EMBED,
    "embed.cu",
    [
        "softsign_backward_f32",
        "embed_assemble_forward",
        "embed_assemble_backward",
        "drop_prefix_f32",
        "pad_prefix_f32",
    ]
);
kernel_file!(
    POISSON,
    "poisson.cu",
    [
        "poisson_forward_partial",
        "poisson_forward_final",
        "poisson_backward_f32",
    ]
);
kernel_file!(BPS, "bps.cu", ["bps_accumulate"]);
kernel_file!(
    ADAMW,
    "adamw.cu",
    ["grad_sumsq_partial", "grad_norm_final", "adamw_update"]
);
kernel_file!(
    MASK,
    "mask.cu",
    [
        "mask_input_f32",
        "dropout_forward_f32",
        "dropout_backward_f32",
        "rng_bits_u64",
        "rng_uniform_f32",
    ]
);

/// Every kernel file, each compiled into its own module.
pub const ALL: &[KernelFile] = &[
    GEMM, LINEAR, MLP, LAYERNORM, ATTENTION, EMBED, POISSON, BPS, ADAMW, MASK,
];
