//! Typed views of device memory: `Dev<T>` (an address and an element count) and `Tensor`
//! (an f32 or bf16 view). Views are made by `Buffer::dev` (see `memory.rs` for what a view
//! does and does not guarantee).

use crate::error::{Error, Result};
use std::marker::PhantomData;

/// A typed view of device memory: a raw device address and an element count. Cheap to copy.
///
/// A view does not keep its allocation alive. The safe memory operations of `Gpu` (`upload`,
/// `download*`, `copy`, `zero`, `fill_f32`) check a view against the live allocations of that
/// `Gpu` before touching memory, so a stale or altered view there is an error, never a read or
/// write of freed memory; `Gpu::launch` cannot check its arguments and is `unsafe` for that
/// reason. The fields are public for reading (launchers pass `ptr` inside `#[repr(C)]` argument
/// structs); writing them makes a view the checks above reject unless it still lies inside a
/// live allocation.
pub struct Dev<T> {
    pub ptr: u64,
    pub len: usize,
    _t: PhantomData<T>,
}

impl<T> Clone for Dev<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Dev<T> {}

impl<T> std::fmt::Debug for Dev<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dev({:#x}, {})", self.ptr, self.len)
    }
}

impl<T> Dev<T> {
    /// A view of `len` elements of `T` at device address `ptr`.
    ///
    /// # Safety
    /// `ptr .. ptr + len * size_of::<T>()` must lie inside one live allocation of the `Gpu`
    /// the view will be used with, and every kernel launched with the view (or a graph that
    /// replays such a launch) must run before that allocation is freed.
    pub(super) unsafe fn from_raw(ptr: u64, len: usize) -> Dev<T> {
        Dev {
            ptr,
            len,
            _t: PhantomData,
        }
    }
    /// The null view (a kernel argument that is absent).
    pub fn null() -> Dev<T> {
        Dev {
            ptr: 0,
            len: 0,
            _t: PhantomData,
        }
    }
    pub fn is_null(&self) -> bool {
        self.ptr == 0
    }
    /// Elements `off .. off + len`; panics when out of range (a programmer bug).
    pub fn slice(&self, off: usize, len: usize) -> Dev<T> {
        assert!(
            off.checked_add(len).is_some_and(|end| end <= self.len),
            "device view {off}+{len} out of range {}",
            self.len
        );
        Dev {
            ptr: self
                .ptr
                .wrapping_add((off * std::mem::size_of::<T>()) as u64),
            len,
            _t: PhantomData,
        }
    }
    /// Checks that the view holds at least `n` elements (for a launcher's shape contract).
    pub fn need(&self, n: usize, what: &str) -> Result<()> {
        if self.ptr == 0 || self.len < n {
            return Err(Error::Internal(format!(
                "{what}: device buffer of {} elements, {n} needed",
                self.len
            )));
        }
        Ok(())
    }
    /// The view's extent in bytes (saturating: an altered `len` is caught by the live-memory
    /// check, not by an overflow).
    pub(super) fn bytes(&self) -> usize {
        self.len.saturating_mul(std::mem::size_of::<T>())
    }
}

/// A tensor on the device stored as f32 or as bf16 (raw bits, rounded to nearest even), as the
/// matrix products read and write it: in bf16 precision a tensor that only products read is
/// kept in bf16, since they round their operands to bf16 anyway.
#[derive(Clone, Copy, Debug)]
pub enum Tensor {
    F32(Dev<f32>),
    Bf16(Dev<u16>),
}

impl Tensor {
    pub fn ptr(&self) -> u64 {
        match self {
            Tensor::F32(d) => d.ptr,
            Tensor::Bf16(d) => d.ptr,
        }
    }
    pub fn len(&self) -> usize {
        match self {
            Tensor::F32(d) => d.len,
            Tensor::Bf16(d) => d.len,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn is_bf16(&self) -> bool {
        matches!(self, Tensor::Bf16(_))
    }
    /// Bytes per element.
    pub fn elem_bytes(&self) -> usize {
        if self.is_bf16() { 2 } else { 4 }
    }
    /// Elements `off .. off + len` (see `Dev::slice`).
    pub fn slice(&self, off: usize, len: usize) -> Tensor {
        match self {
            Tensor::F32(d) => Tensor::F32(d.slice(off, len)),
            Tensor::Bf16(d) => Tensor::Bf16(d.slice(off, len)),
        }
    }
    /// See `Dev::need`.
    pub fn need(&self, n: usize, what: &str) -> Result<()> {
        match self {
            Tensor::F32(d) => d.need(n, what),
            Tensor::Bf16(d) => d.need(n, what),
        }
    }
}

impl From<Dev<f32>> for Tensor {
    fn from(d: Dev<f32>) -> Tensor {
        Tensor::F32(d)
    }
}

impl From<Dev<u16>> for Tensor {
    fn from(d: Dev<u16>) -> Tensor {
        Tensor::Bf16(d)
    }
}
