//! Device memory: allocation (`Buffer<T>`, `TensorBuf`), the copies between host and device
//! and on the device, and the ledger of live allocations that makes them memory-safe.
//!
//! # What the types guarantee
//!
//! Launchers take `Dev<T>` views by value (a training step is captured once as a graph and
//! replayed, so kernels address sub-ranges of long-lived buffers), and a view cannot carry the
//! lifetime of its buffer without changing every launcher. The design is therefore:
//!
//! * `Buffer<T>` owns an allocation; `Buffer::dev` is the only safe way to get a non-null
//!   `Dev<T>` (`Dev::from_raw` is `unsafe`, with the contract that the range is inside a live
//!   allocation). Dropping a buffer frees the allocation (stream-ordered on a GPU).
//! * Every allocation of a `Gpu` is recorded in its `Ledger` (start address, extent) from
//!   `alloc` to `Drop`. Every safe operation that touches memory through a view (`upload`,
//!   `download*`, `copy`, `zero`, `fill_f32`) first checks that the bytes it will touch lie
//!   inside one live allocation of this `Gpu`, and fails with `Error::Internal` otherwise. So
//!   no safe call reads or writes freed memory, memory of another `Gpu`, or memory outside an
//!   allocation — whatever was done to the view (it is `Copy`, and its fields are public).
//!   The emulator repeats the check when a replayed graph copies, zeroes or fills.
//! * Kernel launches cannot be checked (the arguments are opaque bytes), so `Gpu::launch` is
//!   `unsafe`: its caller promises that every pointer argument addresses live memory of the
//!   extent the kernel touches, for the launch and for every replay of a graph that captured
//!   it. This is the one entry point where a view is dereferenced unchecked.
//!
//! Not guaranteed: a stale view whose address range was reused by a later allocation passes the
//! check and touches that allocation (wrong data, but live memory of the right extent); and a
//! download into a type with invalid bit patterns (`bool`) trusts the device's bytes, as any
//! copy from the device does.

use super::Gpu;
use super::engine::Mem;
use super::view::{Dev, Tensor};
use crate::error::{Error, Result};
use cudarc::driver::{DevicePtr, DeviceRepr, ValidAsZeroBits};
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// An owned `Tensor`.
pub enum TensorBuf {
    F32(Buffer<f32>),
    Bf16(Buffer<u16>),
}

impl TensorBuf {
    /// `n` zeroed elements, in bf16 when `bf16`.
    pub fn new(gpu: &Gpu, n: usize, bf16: bool) -> Result<TensorBuf> {
        Ok(if bf16 {
            TensorBuf::Bf16(gpu.alloc::<u16>(n)?)
        } else {
            TensorBuf::F32(gpu.alloc::<f32>(n)?)
        })
    }
    pub fn view(&self) -> Tensor {
        match self {
            TensorBuf::F32(b) => Tensor::F32(b.dev()),
            TensorBuf::Bf16(b) => Tensor::Bf16(b.dev()),
        }
    }
    pub fn bytes(&self) -> usize {
        match self {
            TensorBuf::F32(b) => 4 * b.len(),
            TensorBuf::Bf16(b) => 2 * b.len(),
        }
    }
}

/// An owned device allocation.
pub struct Buffer<T> {
    /// The allocation, freed when the buffer drops (after `Drop::drop` below).
    _mem: Mem,
    addr: u64,
    len: usize,
    bytes: usize,
    ledger: Arc<Ledger>,
    _t: PhantomData<T>,
}

impl<T> Buffer<T> {
    /// A view of the whole buffer. The view does not keep the buffer alive (see the top of
    /// this file for what a view of a dropped buffer can and cannot do).
    pub fn dev(&self) -> Dev<T> {
        // SAFETY: the range is this live allocation; launches through the view are `unsafe`
        // and their callers promise the buffer outlives them.
        unsafe { Dev::from_raw(self.addr, self.len) }
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<T> Drop for Buffer<T> {
    fn drop(&mut self) {
        // Out of the ledger before `_mem` frees the memory.
        self.ledger.remove(self.addr, self.bytes);
    }
}

/// Bytes allocated through `Gpu::alloc`, now and at the peak.
#[derive(Default, Debug)]
pub struct MemCounter {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl MemCounter {
    fn add(&self, n: usize) {
        let now = self.now.fetch_add(n, Relaxed) + n;
        self.peak.fetch_max(now, Relaxed);
    }
    fn sub(&self, n: usize) {
        self.now.fetch_sub(n, Relaxed);
    }
    pub fn now(&self) -> usize {
        self.now.load(Relaxed)
    }
    pub fn peak(&self) -> usize {
        self.peak.load(Relaxed)
    }
}

/// The live allocations of one `Gpu` (start address -> bytes) and their byte counts.
#[derive(Default, Debug)]
pub(super) struct Ledger {
    pub(super) counter: MemCounter,
    live: Mutex<BTreeMap<u64, usize>>,
}

impl Ledger {
    fn live(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, usize>> {
        // The map is consistent after any panic (single insert/remove calls).
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn insert(&self, addr: u64, bytes: usize) {
        self.live().insert(addr, bytes);
        self.counter.add(bytes);
    }
    fn remove(&self, addr: u64, bytes: usize) {
        self.live().remove(&addr);
        self.counter.sub(bytes);
    }
    /// Checks that `addr .. addr + bytes` lies inside one live allocation.
    pub(super) fn check(&self, addr: u64, bytes: usize, what: &str) -> Result<()> {
        let inside = self
            .live()
            .range(..=addr)
            .next_back()
            .is_some_and(|(&start, &len)| {
                let end = start.checked_add(len as u64);
                let want = addr.checked_add(bytes as u64);
                matches!((end, want), (Some(e), Some(w)) if w <= e)
            });
        if !inside {
            return Err(Error::Internal(format!(
                "{what}: {bytes} bytes at {addr:#x} are not inside a live allocation of this \
                 device (a view of a dropped buffer?)"
            )));
        }
        Ok(())
    }
}

/// `host` as bytes.
fn as_bytes<T: DeviceRepr>(host: &[T]) -> &[u8] {
    // SAFETY: DeviceRepr types are plain data; the slice covers exactly `host`.
    unsafe { std::slice::from_raw_parts(host.as_ptr() as *const u8, std::mem::size_of_val(host)) }
}

impl Gpu {
    /// A zeroed allocation of `n` elements.
    pub fn alloc<T: DeviceRepr + ValidAsZeroBits>(&self, n: usize) -> Result<Buffer<T>> {
        if self.capturing.get() {
            return Err(Error::Internal("allocation during graph capture".into()));
        }
        let len = n.max(1);
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .ok_or_else(|| Error::Internal(format!("allocation of {n} elements overflows")))?;
        let context = format!(
            "on {} ({:.1} MiB already allocated)",
            self.info.name,
            self.mem().now() as f64 / (1 << 20) as f64
        );
        let mem = self.engine.alloc(bytes, &context)?;
        let addr = match &mem {
            Mem::Cuda(s) => s.device_ptr(s.stream()).0,
            Mem::Host(h) => h.addr(),
        };
        self.ledger.insert(addr, bytes);
        Ok(Buffer {
            _mem: mem,
            addr,
            len,
            bytes,
            ledger: self.ledger.clone(),
            _t: PhantomData,
        })
    }

    /// An allocation holding a copy of `host`.
    pub fn upload_new<T: DeviceRepr + ValidAsZeroBits>(&self, host: &[T]) -> Result<Buffer<T>> {
        let b = self.alloc::<T>(host.len())?;
        self.upload(b.dev(), host)?;
        Ok(b)
    }

    /// Copies `host` into the start of `dst` (stream-ordered; `host` may be reused on return).
    pub fn upload<T: DeviceRepr>(&self, dst: Dev<T>, host: &[T]) -> Result<()> {
        if host.is_empty() {
            return Ok(());
        }
        dst.need(host.len(), "upload")?;
        self.not_capturing("upload")?;
        let src = as_bytes(host);
        self.ledger.check(dst.ptr, src.len(), "upload")?;
        // SAFETY: the destination range lies inside a live allocation (checked above).
        unsafe { self.engine.upload(dst.ptr, src) }
    }

    /// Copies `src` to a new host vector (waits for the stream).
    pub fn download<T: DeviceRepr + Default + Clone>(&self, src: Dev<T>) -> Result<Vec<T>> {
        let mut out = vec![T::default(); src.len];
        self.download_into(src, &mut out)?;
        Ok(out)
    }

    /// A tensor's elements as f32 (bf16 ones widened exactly; waits for the stream).
    pub fn download_tensor(&self, src: Tensor) -> Result<Vec<f32>> {
        match src {
            Tensor::F32(d) => self.download(d),
            Tensor::Bf16(d) => Ok(self
                .download(d)?
                .into_iter()
                .map(|h| f32::from_bits((h as u32) << 16))
                .collect()),
        }
    }

    /// Copies the first `dst.len()` elements of `src` into `dst` (waits for the stream).
    pub fn download_into<T: DeviceRepr>(&self, src: Dev<T>, dst: &mut [T]) -> Result<()> {
        if dst.is_empty() {
            return Ok(());
        }
        src.need(dst.len(), "download")?;
        self.not_capturing("download")?;
        let bytes = std::mem::size_of_val(dst);
        self.ledger.check(src.ptr, bytes, "download")?;
        // SAFETY: DeviceRepr types are plain data written by their bytes; the slice covers
        // exactly `dst`.
        let out = unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr() as *mut u8, bytes) };
        // SAFETY: the source range lies inside a live allocation (checked above).
        unsafe { self.engine.download(src.ptr, out) }
    }

    /// Copies `n` elements from `src` to `dst` on the stream.
    pub fn copy<T>(&self, dst: Dev<T>, src: Dev<T>, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        dst.need(n, "device copy (dst)")?;
        src.need(n, "device copy (src)")?;
        let bytes = n * std::mem::size_of::<T>();
        self.ledger.check(dst.ptr, bytes, "device copy (dst)")?;
        self.ledger.check(src.ptr, bytes, "device copy (src)")?;
        self.profile_note(|| (format!("{bytes} bytes"), 0.0));
        let capturing = self.capturing.get();
        self.timed("memory", "copy", (1, 1, 1), (1, 1, 1), || {
            // SAFETY: both ranges lie inside live allocations (checked above); a captured copy
            // is checked again on each replay by the emulator, and on a GPU the allocation is
            // freed only when its `Buffer` drops (the graph's owner keeps them).
            unsafe { self.engine.copy(dst.ptr, src.ptr, bytes, capturing) }
        })
    }

    /// Sets the bytes of `dst` to zero on the stream.
    pub fn zero<T>(&self, dst: Dev<T>) -> Result<()> {
        if dst.len == 0 {
            return Ok(());
        }
        let bytes = dst.bytes();
        self.ledger.check(dst.ptr, bytes, "zeroing device memory")?;
        self.profile_note(|| (format!("{bytes} bytes"), 0.0));
        let capturing = self.capturing.get();
        self.timed("memory", "memset", (1, 1, 1), (1, 1, 1), || {
            // SAFETY: the range lies inside a live allocation (checked above); see `copy`.
            unsafe { self.engine.zero(dst.ptr, bytes, capturing) }
        })
    }

    /// Fills `dst` with copies of `value` (for poisoning outputs in tests).
    pub fn fill_f32(&self, dst: Dev<f32>, value: f32) -> Result<()> {
        if dst.len == 0 {
            return Ok(());
        }
        self.ledger
            .check(dst.ptr, dst.bytes(), "filling device memory")?;
        if !dst.ptr.is_multiple_of(4) {
            return Err(Error::Internal(format!(
                "filling device memory: {:#x} is not 4-byte aligned",
                dst.ptr
            )));
        }
        let capturing = self.capturing.get();
        // SAFETY: the range lies inside a live allocation and is aligned (checked above).
        unsafe {
            self.engine
                .fill32(dst.ptr, dst.len, value.to_bits(), capturing)
        }
    }

    /// Bytes allocated through this handle (now, peak).
    pub fn mem(&self) -> &MemCounter {
        &self.ledger.counter
    }

    /// Device-wide used memory in bytes, as the driver reports it (the emulator: what this
    /// handle has allocated).
    pub fn used_mem(&self) -> Result<usize> {
        Ok(self.engine.used_mem()?.unwrap_or_else(|| self.mem().now()))
    }

    /// Host copies are not stream operations a graph can replay: refused while capturing.
    fn not_capturing(&self, what: &str) -> Result<()> {
        if self.capturing.get() {
            return Err(Error::Internal(format!("{what} during graph capture")));
        }
        Ok(())
    }
}
