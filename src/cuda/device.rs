//! The GPU handle: one device, one CUDA context, one working stream, the kernel modules loaded
//! lazily (one per kernel file), and device memory as typed `(pointer, length)` views.
//!
//! Launchers take `Dev<T>` views rather than borrowed slices: a training step is captured once
//! as a CUDA graph and replayed, so every buffer lives in long-lived allocations (`Buffer<T>`)
//! owned by the backend and kernels address sub-ranges of them.

use super::kernels::KernelFile;
use super::nvrtc::{Arch, Nvrtc};
use crate::error::{Error, Result};
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr};
use cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits, result, sys};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

/// What `available()` reports about a device.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    /// Compute capability, e.g. (8, 6).
    pub arch: (u32, u32),
    pub total_mem: usize,
    pub multiprocessors: u32,
    /// Driver API version, e.g. 12040 for 12.4.
    pub driver_version: i32,
    /// NVRTC version, e.g. (12, 9).
    pub nvrtc_version: (i32, i32),
}

impl std::fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cuda:{} {} (sm_{}{}, {} SMs, {:.1} GiB, driver {}.{}, NVRTC {}.{})",
            self.ordinal,
            self.name,
            self.arch.0,
            self.arch.1,
            self.multiprocessors,
            self.total_mem as f64 / (1u64 << 30) as f64,
            self.driver_version / 1000,
            (self.driver_version % 1000) / 10,
            self.nvrtc_version.0,
            self.nvrtc_version.1
        )
    }
}

/// A typed view of device memory: a raw device address and an element count. Cheap to copy;
/// the allocation it points into must outlive every launch that uses it.
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
            off + len <= self.len,
            "device view {off}+{len} out of range {}",
            self.len
        );
        Dev {
            ptr: self.ptr + (off * std::mem::size_of::<T>()) as u64,
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
}

/// An owned device allocation.
pub struct Buffer<T> {
    slice: CudaSlice<T>,
    bytes: usize,
    gpu_bytes: Arc<MemCounter>,
}

impl<T> Buffer<T> {
    pub fn dev(&self) -> Dev<T> {
        let (ptr, _sync) = self.slice.device_ptr(self.slice.stream());
        Dev {
            ptr,
            len: self.slice.len(),
            _t: PhantomData,
        }
    }
    pub fn len(&self) -> usize {
        self.slice.len()
    }
    pub fn is_empty(&self) -> bool {
        self.slice.len() == 0
    }
}

impl<T> Drop for Buffer<T> {
    fn drop(&mut self) {
        self.gpu_bytes.sub(self.bytes);
    }
}

/// Bytes allocated through `Gpu::alloc`, now and at the peak.
#[derive(Default, Debug)]
pub struct MemCounter {
    now: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
}

impl MemCounter {
    fn add(&self, n: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let now = self.now.fetch_add(n, Relaxed) + n;
        self.peak.fetch_max(now, Relaxed);
    }
    fn sub(&self, n: usize) {
        self.now.fetch_sub(n, std::sync::atomic::Ordering::Relaxed);
    }
    pub fn now(&self) -> usize {
        self.now.load(std::sync::atomic::Ordering::Relaxed)
    }
    pub fn peak(&self) -> usize {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Converts a driver error into `Error::Cuda` with what was being done.
pub fn drv<T>(r: std::result::Result<T, result::DriverError>, what: &str) -> Result<T> {
    r.map_err(|e| Error::Cuda(format!("{what}: {e}")))
}

/// One GPU: context, working stream, compiled kernel modules.
pub struct Gpu {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub info: DeviceInfo,
    pub arch: Arch,
    nvrtc: Nvrtc,
    modules: RefCell<HashMap<&'static str, Arc<CudaModule>>>,
    functions: RefCell<HashMap<(&'static str, &'static str), CudaFunction>>,
    mem: Arc<MemCounter>,
    /// Whether the stream is being captured into a graph (no allocation, no sync allowed).
    capturing: Cell<bool>,
}

/// Whether a CUDA driver library can be opened; never panics.
fn driver_present() -> bool {
    // SAFETY: only tries to open the library by its usual names.
    unsafe { sys::is_culib_present() }
}

impl Gpu {
    /// Opens device `ordinal`. Every failure (no driver, no device, no NVRTC, an unusable
    /// driver) is an `Error::Cuda` saying what is missing.
    pub fn open(ordinal: usize) -> Result<Gpu> {
        if !driver_present() {
            return Err(Error::Cuda(
                "no CUDA driver on this machine (libcuda.so.1 not found): no NVIDIA GPU is usable"
                    .into(),
            ));
        }
        // cudarc panics when a driver lacks a symbol it binds; such a driver is an error here.
        let ctx = std::panic::catch_unwind(|| -> Result<Arc<CudaContext>> {
            let n = drv(CudaContext::device_count(), "counting CUDA devices")?;
            if n <= 0 {
                return Err(Error::Cuda("the CUDA driver reports no device".into()));
            }
            if ordinal >= n as usize {
                return Err(Error::Cuda(format!(
                    "CUDA device {ordinal} asked for, {n} present"
                )));
            }
            drv(
                CudaContext::new(ordinal),
                &format!("creating a context on device {ordinal}"),
            )
        })
        .map_err(|_| Error::Cuda("the CUDA driver found is unusable (too old?)".into()))??;
        // One stream, ordered explicitly: no per-buffer events (they cannot be captured).
        // SAFETY: every buffer of this context is used on `stream` only.
        unsafe { ctx.disable_event_tracking() };
        let stream = drv(ctx.new_stream(), "creating a stream")?;
        let nvrtc = Nvrtc::load()?;
        let (major, minor) = drv(ctx.compute_capability(), "reading the compute capability")?;
        if major < 8 {
            return Err(Error::Cuda(format!(
                "device {ordinal} is sm_{major}{minor}; the kernels need sm_80 or newer (bf16 mma.sync)"
            )));
        }
        let sms = drv(
            ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT),
            "reading the multiprocessor count",
        )?;
        let mut driver_version = 0;
        // SAFETY: out-pointer; the driver is initialised.
        unsafe { sys::cuDriverGetVersion(&mut driver_version) };
        let info = DeviceInfo {
            ordinal,
            name: drv(ctx.name(), "reading the device name")?,
            arch: (major as u32, minor as u32),
            total_mem: drv(ctx.total_mem(), "reading the device memory size")?,
            multiprocessors: sms as u32,
            driver_version,
            nvrtc_version: nvrtc.version(),
        };
        Ok(Gpu {
            ctx,
            stream,
            arch: Arch::new(major as u32, minor as u32),
            info,
            nvrtc,
            modules: RefCell::new(HashMap::new()),
            functions: RefCell::new(HashMap::new()),
            mem: Arc::new(MemCounter::default()),
            capturing: Cell::new(false),
        })
    }

    /// Kernel `name` of `file`, compiling (or taking from the cache) and loading the module on
    /// first use.
    pub fn function(&self, file: &KernelFile, name: &'static str) -> Result<CudaFunction> {
        if let Some(f) = self.functions.borrow().get(&(file.name, name)) {
            return Ok(f.clone());
        }
        if !file.entries.contains(&name) {
            return Err(Error::Internal(format!(
                "kernels/{}: no kernel '{name}' in its entry list",
                file.name
            )));
        }
        let module = self.module(file)?;
        let f = drv(
            module.load_function(name),
            &format!("kernels/{}: loading kernel {name}", file.name),
        )?;
        self.functions
            .borrow_mut()
            .insert((file.name, name), f.clone());
        Ok(f)
    }

    fn module(&self, file: &KernelFile) -> Result<Arc<CudaModule>> {
        if let Some(m) = self.modules.borrow().get(file.name) {
            return Ok(m.clone());
        }
        if self.capturing.get() {
            return Err(Error::Internal(format!(
                "kernels/{} first used while a graph is being captured",
                file.name
            )));
        }
        let compiled = self.nvrtc.compile_cached(file, self.arch)?;
        let ptx = if compiled.is_ptx {
            let end = compiled
                .image
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(compiled.image.len());
            cudarc::nvrtc::Ptx::from_src(String::from_utf8_lossy(&compiled.image[..end]))
        } else {
            cudarc::nvrtc::Ptx::from_binary(compiled.image)
        };
        let m = drv(
            self.ctx.load_module(ptx),
            &format!(
                "kernels/{}: loading the module for {}",
                file.name, self.arch
            ),
        )?;
        self.modules.borrow_mut().insert(file.name, m.clone());
        Ok(m)
    }

    /// Compiles and loads every kernel of every file now (so that nothing is compiled or
    /// looked up while a graph is being captured).
    pub fn load_all(&self) -> Result<()> {
        for f in super::kernels::ALL {
            for &name in f.entries {
                self.function(f, name)?;
            }
        }
        Ok(())
    }

    /// A zeroed allocation of `n` elements.
    pub fn alloc<T: DeviceRepr + ValidAsZeroBits>(&self, n: usize) -> Result<Buffer<T>> {
        if self.capturing.get() {
            return Err(Error::Internal("allocation during graph capture".into()));
        }
        let bytes = n.max(1) * std::mem::size_of::<T>();
        let slice = self.stream.alloc_zeros::<T>(n.max(1)).map_err(|e| {
            Error::Cuda(format!(
                "allocating {:.1} MiB on {} ({:.1} MiB already allocated): {e}",
                bytes as f64 / (1 << 20) as f64,
                self.info.name,
                self.mem.now() as f64 / (1 << 20) as f64
            ))
        })?;
        self.mem.add(bytes);
        Ok(Buffer {
            slice,
            bytes,
            gpu_bytes: self.mem.clone(),
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
        drv(self.ctx.bind_to_thread(), "binding the context")?;
        // SAFETY: `dst` has room for `host.len()` elements of T; a host-to-device copy from
        // pageable memory has read `host` when it returns.
        drv(
            unsafe { result::memcpy_htod_async(dst.ptr, host, self.stream.cu_stream()) },
            "copying to the device",
        )
    }

    /// Copies `src` to a new host vector (waits for the stream).
    pub fn download<T: DeviceRepr + Default + Clone>(&self, src: Dev<T>) -> Result<Vec<T>> {
        let mut out = vec![T::default(); src.len];
        self.download_into(src, &mut out)?;
        Ok(out)
    }

    /// Copies the first `dst.len()` elements of `src` into `dst` (waits for the stream).
    pub fn download_into<T: DeviceRepr>(&self, src: Dev<T>, dst: &mut [T]) -> Result<()> {
        if dst.is_empty() {
            return Ok(());
        }
        src.need(dst.len(), "download")?;
        drv(self.ctx.bind_to_thread(), "binding the context")?;
        // SAFETY: `src` holds at least `dst.len()` elements; the stream is synchronised before
        // `dst` is read or released.
        drv(
            unsafe { result::memcpy_dtoh_async(dst, src.ptr, self.stream.cu_stream()) },
            "copying from the device",
        )?;
        self.sync()
    }

    /// Copies `n` elements from `src` to `dst` on the stream.
    pub fn copy<T>(&self, dst: Dev<T>, src: Dev<T>, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        drv(self.ctx.bind_to_thread(), "binding the context")?;
        dst.need(n, "device copy (dst)")?;
        src.need(n, "device copy (src)")?;
        // SAFETY: both views hold `n` elements of the same type.
        drv(
            unsafe {
                result::memcpy_dtod_async(
                    dst.ptr,
                    src.ptr,
                    n * std::mem::size_of::<T>(),
                    self.stream.cu_stream(),
                )
            },
            "device copy",
        )
    }

    /// Sets the bytes of `dst` to zero on the stream.
    pub fn zero<T>(&self, dst: Dev<T>) -> Result<()> {
        if dst.len == 0 {
            return Ok(());
        }
        drv(self.ctx.bind_to_thread(), "binding the context")?;
        // SAFETY: `dst` is a live view of `len` elements.
        drv(
            unsafe {
                result::memset_d8_async(
                    dst.ptr,
                    0,
                    dst.len * std::mem::size_of::<T>(),
                    self.stream.cu_stream(),
                )
            },
            "zeroing device memory",
        )
    }

    /// Fills `dst` with copies of `value` (for poisoning outputs in tests).
    pub fn fill_f32(&self, dst: Dev<f32>, value: f32) -> Result<()> {
        if dst.len == 0 {
            return Ok(());
        }
        drv(self.ctx.bind_to_thread(), "binding the context")?;
        // SAFETY: `dst` is a live view of `len` 32-bit elements.
        drv(
            unsafe {
                sys::cuMemsetD32Async(dst.ptr, value.to_bits(), dst.len, self.stream.cu_stream())
                    .result()
            },
            "filling device memory",
        )
    }

    /// Waits until the stream is idle; reports asynchronous kernel faults.
    pub fn sync(&self) -> Result<()> {
        drv(self.stream.synchronize(), "synchronising the stream")
    }

    /// Bytes allocated through this handle (now, peak).
    pub fn mem(&self) -> &MemCounter {
        &self.mem
    }

    /// Device-wide used memory in bytes, as the driver reports it.
    pub fn used_mem(&self) -> Result<usize> {
        let (free, total) = drv(self.ctx.mem_get_info(), "reading memory use")?;
        Ok(total - free)
    }

    /// Marks the stream as being captured into a graph (allocation and first module loads are
    /// refused meanwhile).
    pub fn set_capturing(&self, on: bool) {
        self.capturing.set(on);
    }

    /// Launches `name` of `file` with `cfg` and the arguments `args`.
    ///
    /// # Safety
    /// `args` must match the kernel's C signature in type and order, and every pointer must
    /// address live device memory of the extent the kernel touches for `cfg`.
    pub unsafe fn launch(
        &self,
        file: &KernelFile,
        name: &'static str,
        cfg: LaunchConfig,
        args: &Args,
    ) -> Result<()> {
        let f = self.function(file, name)?;
        let mut b = self.stream.launch_builder(&f);
        for v in &args.0 {
            v.push(&mut b);
        }
        // SAFETY: the caller guarantees that the arguments match the kernel signature and
        // address live memory; `args` outlives the launch call.
        let r = unsafe { b.launch(cfg) };
        drv(r, &format!("kernels/{}: launching {name}", file.name)).map(|_| ())
    }
}

/// Kernel arguments, in the order of the kernel's C signature.
#[derive(Default)]
pub struct Args(Vec<Box<dyn ArgValue>>);

/// A boxed kernel argument value (kept alive until the launch).
pub trait ArgValue {
    fn push<'a>(&'a self, b: &mut cudarc::driver::LaunchArgs<'a>);
}

struct Arg<T: DeviceRepr>(T);

impl<T: DeviceRepr> ArgValue for Arg<T> {
    fn push<'a>(&'a self, b: &mut cudarc::driver::LaunchArgs<'a>) {
        b.arg(&self.0);
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
