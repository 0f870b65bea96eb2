//! Kernel arguments boxed in the order of a kernel's C signature, and launch geometry helpers.

use super::view::{Dev, Tensor};
use cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};

/// Kernel arguments, in the order of the kernel's C signature.
#[derive(Default)]
pub struct Args(pub(super) Vec<Box<dyn ArgValue>>);

/// A boxed kernel argument value (kept alive until the launch).
pub trait ArgValue {
    fn push<'a>(&'a self, b: &mut cudarc::driver::LaunchArgs<'a>);
    /// The value's bytes, as the kernel reads them (for the kernel emulator).
    fn bytes(&self) -> &[u8];
}

struct Arg<T: DeviceRepr>(T);

impl<T: DeviceRepr> ArgValue for Arg<T> {
    fn push<'a>(&'a self, b: &mut cudarc::driver::LaunchArgs<'a>) {
        b.arg(&self.0);
    }
    fn bytes(&self) -> &[u8] {
        // SAFETY: DeviceRepr types are plain data passed to kernels by their bytes.
        unsafe {
            std::slice::from_raw_parts(&self.0 as *const T as *const u8, std::mem::size_of::<T>())
        }
    }
}

impl Args {
    pub fn new() -> Args {
        Args(Vec::new())
    }
    /// A device pointer argument (`T*` / `const T*`); a null view passes a null pointer.
    pub fn ptr<T>(mut self, d: Dev<T>) -> Self {
        self.0.push(Box::new(Arg(d.ptr)));
        self
    }
    /// A `Tensor`'s pointer (`float*` or `bf16_t*`, as the kernel's entry expects).
    pub fn tensor(mut self, t: Tensor) -> Self {
        self.0.push(Box::new(Arg(t.ptr())));
        self
    }
    pub fn i32(mut self, v: i32) -> Self {
        self.0.push(Box::new(Arg(v)));
        self
    }
    pub fn i64(mut self, v: i64) -> Self {
        self.0.push(Box::new(Arg(v)));
        self
    }
    pub fn u64(mut self, v: u64) -> Self {
        self.0.push(Box::new(Arg(v)));
        self
    }
    pub fn f32(mut self, v: f32) -> Self {
        self.0.push(Box::new(Arg(v)));
        self
    }
    /// A `#[repr(C)]` struct passed by value.
    pub fn value<T: DeviceRepr + 'static>(mut self, v: T) -> Self {
        self.0.push(Box::new(Arg(v)));
        self
    }
}

/// `n` elements, `threads` per block, at most `max_blocks` blocks (grid-stride loops).
pub fn grid_1d(n: usize, threads: u32, max_blocks: u32) -> LaunchConfig {
    let blocks = n.div_ceil(threads as usize).clamp(1, max_blocks as usize) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}
