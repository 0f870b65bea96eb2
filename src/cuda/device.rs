//! The GPU handle: one device, one CUDA context, one working stream, the kernel modules loaded
//! lazily (one per kernel file), and device memory as typed `(pointer, length)` views.
//!
//! Launchers take `Dev<T>` views rather than borrowed slices: a training step is captured once
//! as a CUDA graph and replayed, so every buffer lives in long-lived allocations (`Buffer<T>`)
//! owned by the backend and kernels address sub-ranges of them.

use super::emu;
use super::kernels::KernelFile;
use super::nvrtc::{Arch, Nvrtc};
use super::profile::{self, OpTime, Recorder, Stamp};
use crate::error::{Error, Result};
use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::{CudaContext, CudaFunction, CudaGraph, CudaModule, CudaSlice, CudaStream};
use cudarc::driver::{DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits};
use cudarc::driver::{result, sys};
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
    mem: Mem<T>,
    len: usize,
    bytes: usize,
    gpu_bytes: Arc<MemCounter>,
}

/// Where an allocation lives: on the GPU, or in host pages for the kernel emulator.
enum Mem<T> {
    Cuda(CudaSlice<T>),
    Host(emu::HostMem),
}

impl<T> Buffer<T> {
    pub fn dev(&self) -> Dev<T> {
        let ptr = match &self.mem {
            Mem::Cuda(s) => s.device_ptr(s.stream()).0,
            Mem::Host(h) => h.addr(),
        };
        Dev {
            ptr,
            len: self.len,
            _t: PhantomData,
        }
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

/// One GPU: context, working stream, compiled kernel modules; or the kernel emulator.
pub struct Gpu {
    engine: Engine,
    pub info: DeviceInfo,
    pub arch: Arch,
    mem: Arc<MemCounter>,
    /// Whether the stream is being captured into a graph (no allocation, no sync allowed).
    capturing: Cell<bool>,
    /// The operation times being recorded (`profile_start`), if any.
    profile: RefCell<Option<Recorder>>,
}

/// What runs the kernels.
enum Engine {
    Cuda(Box<CudaEngine>),
    /// The CPU kernel emulator (`NDT_CUDA_EMU=1`); `recorded` holds the operations of a graph
    /// being captured.
    Emu {
        recorded: RefCell<Vec<EmuOp>>,
        order: emu::Order,
    },
}

struct CudaEngine {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    nvrtc: Nvrtc,
    modules: RefCell<HashMap<&'static str, Arc<CudaModule>>>,
    functions: RefCell<HashMap<(&'static str, &'static str), CudaFunction>>,
}

/// One stream operation of an emulated graph.
enum EmuOp {
    Launch {
        file: KernelFile,
        name: &'static str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        args: Vec<Vec<u8>>,
    },
    Copy {
        dst: u64,
        src: u64,
        bytes: usize,
    },
    Fill32 {
        dst: u64,
        n: usize,
        bits: u32,
    },
    Zero {
        dst: u64,
        bytes: usize,
    },
}

/// A captured training step, replayed with `Gpu::replay`.
pub enum Graph {
    Cuda(CudaGraph),
    Emu(EmuGraph),
}

/// The recorded operations of an emulated graph.
pub struct EmuGraph(Vec<EmuOp>);

/// Whether a CUDA driver library can be opened; never panics.
fn driver_present() -> bool {
    // SAFETY: only tries to open the library by its usual names.
    unsafe { sys::is_culib_present() }
}

impl Gpu {
    /// Opens device `ordinal`, or the kernel emulator when `NDT_CUDA_EMU=1`. Every failure
    /// (no driver, no device, no NVRTC, an unusable driver) is an `Error::Cuda` saying what is
    /// missing.
    pub fn open(ordinal: usize) -> Result<Gpu> {
        if let Some(order) = emu::requested()? {
            return Ok(Gpu::emulated(order));
        }
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
            engine: Engine::Cuda(Box::new(CudaEngine {
                ctx,
                stream,
                nvrtc,
                modules: RefCell::new(HashMap::new()),
                functions: RefCell::new(HashMap::new()),
            })),
            arch: Arch::new(major as u32, minor as u32),
            info,
            mem: Arc::new(MemCounter::default()),
            capturing: Cell::new(false),
            profile: RefCell::new(None),
        })
    }

    /// The CPU kernel emulator as a device (see `emu`), running the threads of a block in
    /// `order` between barriers: named "kernel emulator (CPU)", sm_86 by convention, memory
    /// limited only by the host.
    pub fn emulated(order: emu::Order) -> Gpu {
        Gpu {
            engine: Engine::Emu {
                recorded: RefCell::new(Vec::new()),
                order,
            },
            info: DeviceInfo {
                ordinal: 0,
                name: "kernel emulator (CPU)".into(),
                arch: (8, 6),
                total_mem: 0,
                multiprocessors: 1,
                driver_version: 0,
                nvrtc_version: (0, 0),
            },
            arch: Arch::new(8, 6),
            mem: Arc::new(MemCounter::default()),
            capturing: Cell::new(false),
            profile: RefCell::new(None),
        }
    }

    /// Whether this is the kernel emulator rather than a GPU.
    pub fn is_emulated(&self) -> bool {
        matches!(self.engine, Engine::Emu { .. })
    }

    /// The CUDA stream (for timing with events); an error on the emulator.
    pub fn stream(&self) -> Result<&Arc<CudaStream>> {
        Ok(&self.cuda("the CUDA stream")?.stream)
    }

    fn cuda(&self, what: &str) -> Result<&CudaEngine> {
        match &self.engine {
            Engine::Cuda(c) => Ok(c),
            Engine::Emu { .. } => Err(Error::Cuda(format!(
                "{what} is not available on the kernel emulator"
            ))),
        }
    }

    /// Kernel `name` of `file`, compiling (or taking from the cache) and loading the module on
    /// first use.
    fn function(
        &self,
        c: &CudaEngine,
        file: &KernelFile,
        name: &'static str,
    ) -> Result<CudaFunction> {
        if let Some(f) = c.functions.borrow().get(&(file.name, name)) {
            return Ok(f.clone());
        }
        check_entry(file, name)?;
        let module = self.module(c, file)?;
        let f = drv(
            module.load_function(name),
            &format!("kernels/{}: loading kernel {name}", file.name),
        )?;
        c.functions
            .borrow_mut()
            .insert((file.name, name), f.clone());
        Ok(f)
    }

    fn module(&self, c: &CudaEngine, file: &KernelFile) -> Result<Arc<CudaModule>> {
        if let Some(m) = c.modules.borrow().get(file.name) {
            return Ok(m.clone());
        }
        if self.capturing.get() {
            return Err(Error::Internal(format!(
                "kernels/{} first used while a graph is being captured",
                file.name
            )));
        }
        let compiled = c.nvrtc.compile_cached(file, self.arch)?;
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
            c.ctx.load_module(ptx),
            &format!(
                "kernels/{}: loading the module for {}",
                file.name, self.arch
            ),
        )?;
        c.modules.borrow_mut().insert(file.name, m.clone());
        Ok(m)
    }

    /// Compiles and loads every kernel of every file now (so that nothing is compiled or
    /// looked up while a graph is being captured).
    pub fn load_all(&self) -> Result<()> {
        for f in super::kernels::ALL {
            match &self.engine {
                Engine::Cuda(c) => {
                    for &name in f.entries {
                        self.function(c, f, name)?;
                    }
                }
                Engine::Emu { .. } => emu::prepare(f)?,
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
        let mem = match &self.engine {
            Engine::Cuda(c) => Mem::Cuda(c.stream.alloc_zeros::<T>(n.max(1)).map_err(|e| {
                Error::Cuda(format!(
                    "allocating {:.1} MiB on {} ({:.1} MiB already allocated): {e}",
                    bytes as f64 / (1 << 20) as f64,
                    self.info.name,
                    self.mem.now() as f64 / (1 << 20) as f64
                ))
            })?),
            Engine::Emu { .. } => Mem::Host(emu::HostMem::new(bytes)?),
        };
        self.mem.add(bytes);
        Ok(Buffer {
            mem,
            len: n.max(1),
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
        self.not_capturing("upload")?;
        match &self.engine {
            Engine::Cuda(c) => {
                drv(c.ctx.bind_to_thread(), "binding the context")?;
                // SAFETY: `dst` has room for `host.len()` elements of T; a host-to-device copy
                // from pageable memory has read `host` when it returns.
                drv(
                    unsafe { result::memcpy_htod_async(dst.ptr, host, c.stream.cu_stream()) },
                    "copying to the device",
                )
            }
            Engine::Emu { .. } => {
                // SAFETY: `dst` is a live emulator allocation of at least `host.len()` elements.
                unsafe {
                    std::ptr::copy_nonoverlapping(host.as_ptr(), dst.ptr as *mut T, host.len())
                };
                Ok(())
            }
        }
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
        match &self.engine {
            Engine::Cuda(c) => {
                drv(c.ctx.bind_to_thread(), "binding the context")?;
                // SAFETY: `src` holds at least `dst.len()` elements; the stream is synchronised
                // before `dst` is read or released.
                drv(
                    unsafe { result::memcpy_dtoh_async(dst, src.ptr, c.stream.cu_stream()) },
                    "copying from the device",
                )?;
                self.sync()
            }
            Engine::Emu { .. } => {
                // SAFETY: `src` is a live emulator allocation of at least `dst.len()` elements.
                unsafe {
                    std::ptr::copy_nonoverlapping(src.ptr as *const T, dst.as_mut_ptr(), dst.len())
                };
                Ok(())
            }
        }
    }

    /// Copies `n` elements from `src` to `dst` on the stream.
    pub fn copy<T>(&self, dst: Dev<T>, src: Dev<T>, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        dst.need(n, "device copy (dst)")?;
        src.need(n, "device copy (src)")?;
        let bytes = n * std::mem::size_of::<T>();
        self.profile_note(|| (format!("{bytes} bytes"), 0.0));
        self.timed("memory", "copy", (1, 1, 1), (1, 1, 1), || {
            match &self.engine {
                Engine::Cuda(c) => {
                    drv(c.ctx.bind_to_thread(), "binding the context")?;
                    // SAFETY: both views hold `n` elements of the same type.
                    drv(
                        unsafe {
                            result::memcpy_dtod_async(dst.ptr, src.ptr, bytes, c.stream.cu_stream())
                        },
                        "device copy",
                    )
                }
                Engine::Emu { .. } => self.emu_op(EmuOp::Copy {
                    dst: dst.ptr,
                    src: src.ptr,
                    bytes,
                }),
            }
        })
    }

    /// Sets the bytes of `dst` to zero on the stream.
    pub fn zero<T>(&self, dst: Dev<T>) -> Result<()> {
        if dst.len == 0 {
            return Ok(());
        }
        let bytes = dst.len * std::mem::size_of::<T>();
        self.profile_note(|| (format!("{bytes} bytes"), 0.0));
        self.timed("memory", "memset", (1, 1, 1), (1, 1, 1), || {
            match &self.engine {
                Engine::Cuda(c) => {
                    drv(c.ctx.bind_to_thread(), "binding the context")?;
                    // SAFETY: `dst` is a live view of `len` elements.
                    drv(
                        unsafe { result::memset_d8_async(dst.ptr, 0, bytes, c.stream.cu_stream()) },
                        "zeroing device memory",
                    )
                }
                Engine::Emu { .. } => self.emu_op(EmuOp::Zero {
                    dst: dst.ptr,
                    bytes,
                }),
            }
        })
    }

    /// Fills `dst` with copies of `value` (for poisoning outputs in tests).
    pub fn fill_f32(&self, dst: Dev<f32>, value: f32) -> Result<()> {
        if dst.len == 0 {
            return Ok(());
        }
        match &self.engine {
            Engine::Cuda(c) => {
                drv(c.ctx.bind_to_thread(), "binding the context")?;
                // SAFETY: `dst` is a live view of `len` 32-bit elements.
                drv(
                    unsafe {
                        sys::cuMemsetD32Async(
                            dst.ptr,
                            value.to_bits(),
                            dst.len,
                            c.stream.cu_stream(),
                        )
                        .result()
                    },
                    "filling device memory",
                )
            }
            Engine::Emu { .. } => self.emu_op(EmuOp::Fill32 {
                dst: dst.ptr,
                n: dst.len,
                bits: value.to_bits(),
            }),
        }
    }

    /// Starts recording the time of every stream operation (`src/cuda/profile.rs`): launch
    /// the operations one by one, not as a graph, then call `profile_finish`.
    pub fn profile_start(&self) -> Result<()> {
        if self.capturing.get() {
            return Err(Error::Internal("profiling during graph capture".into()));
        }
        *self.profile.borrow_mut() = Some(Recorder::default());
        Ok(())
    }

    /// Stops recording; waits for the stream and returns the time of each operation since
    /// `profile_start`, in issue order (empty when none was started).
    pub fn profile_finish(&self) -> Result<Vec<OpTime>> {
        let rec = self.profile.borrow_mut().take();
        self.sync()?;
        rec.map_or(Ok(Vec::new()), Recorder::finish)
    }

    /// While recording: `note()` describes the next operation (a product's shape) and counts
    /// its floating-point operations.
    pub fn profile_note(&self, note: impl FnOnce() -> (String, f64)) {
        if let Some(rec) = self.profile.borrow_mut().as_mut()
            && !self.capturing.get()
        {
            rec.note = Some(note());
        }
    }

    /// Runs the stream operation `f`, timed when recording (and not capturing).
    fn timed<R>(
        &self,
        file: &'static str,
        name: &'static str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        f: impl FnOnce() -> Result<R>,
    ) -> Result<R> {
        if self.capturing.get() || self.profile.borrow().is_none() {
            return f();
        }
        let (r, stamp) = match &self.engine {
            Engine::Cuda(c) => profile::bracket(&c.ctx, &c.stream, f)?,
            Engine::Emu { .. } => {
                let t0 = std::time::Instant::now();
                let r = f()?;
                (r, Stamp::Secs(t0.elapsed().as_secs_f64()))
            }
        };
        let op = OpTime {
            file,
            name,
            grid,
            block,
            note: String::new(),
            flops: 0.0,
            secs: 0.0,
        };
        if let Some(rec) = self.profile.borrow_mut().as_mut() {
            rec.push(op, stamp);
        }
        Ok(r)
    }

    /// Waits until the stream is idle; reports asynchronous kernel faults.
    pub fn sync(&self) -> Result<()> {
        match &self.engine {
            Engine::Cuda(c) => drv(c.stream.synchronize(), "synchronising the stream"),
            Engine::Emu { .. } => Ok(()),
        }
    }

    /// Bytes allocated through this handle (now, peak).
    pub fn mem(&self) -> &MemCounter {
        &self.mem
    }

    /// Device-wide used memory in bytes, as the driver reports it (the emulator: what this
    /// handle has allocated).
    pub fn used_mem(&self) -> Result<usize> {
        match &self.engine {
            Engine::Cuda(c) => {
                let (free, total) = drv(c.ctx.mem_get_info(), "reading memory use")?;
                Ok(total - free)
            }
            Engine::Emu { .. } => Ok(self.mem.now()),
        }
    }

    /// Captures the stream operations `enqueue` issues into a graph (allocation and first
    /// module loads are refused meanwhile). The capture ends whatever `enqueue` returns.
    pub fn capture(&self, enqueue: impl FnOnce() -> Result<()>) -> Result<Graph> {
        match &self.engine {
            Engine::Cuda(c) => {
                drv(
                    c.stream
                        .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL),
                    "starting graph capture",
                )?;
                self.capturing.set(true);
                let enqueued = enqueue();
                self.capturing.set(false);
                let graph = c.stream.end_capture(CUgraphInstantiate_flags(0));
                enqueued?;
                let g = drv(graph, "instantiating the training-step graph")?
                    .ok_or_else(|| Error::Cuda("graph capture produced no graph".into()))?;
                Ok(Graph::Cuda(g))
            }
            Engine::Emu { recorded, .. } => {
                recorded.borrow_mut().clear();
                self.capturing.set(true);
                let enqueued = enqueue();
                self.capturing.set(false);
                let ops = std::mem::take(&mut *recorded.borrow_mut());
                enqueued?;
                Ok(Graph::Emu(EmuGraph(ops)))
            }
        }
    }

    /// Replays a graph made by `capture` on this device.
    pub fn replay(&self, g: &Graph) -> Result<()> {
        match g {
            Graph::Cuda(g) => drv(g.launch(), "launching the training-step graph"),
            Graph::Emu(ops) => {
                for op in &ops.0 {
                    self.run_emu_op(op)?;
                }
                Ok(())
            }
        }
    }

    /// Host copies are not stream operations a graph can replay: refused while capturing.
    fn not_capturing(&self, what: &str) -> Result<()> {
        if self.capturing.get() {
            return Err(Error::Internal(format!("{what} during graph capture")));
        }
        Ok(())
    }

    /// Runs an emulated stream operation now, or records it while a graph is captured.
    fn emu_op(&self, op: EmuOp) -> Result<()> {
        match &self.engine {
            Engine::Emu { recorded, .. } if self.capturing.get() => {
                recorded.borrow_mut().push(op);
                Ok(())
            }
            _ => self.run_emu_op(&op),
        }
    }

    /// Performs one emulated stream operation.
    fn run_emu_op(&self, op: &EmuOp) -> Result<()> {
        match op {
            EmuOp::Launch {
                file,
                name,
                grid,
                block,
                args,
            } => {
                let a: Vec<&[u8]> = args.iter().map(|v| v.as_slice()).collect();
                let order = match &self.engine {
                    Engine::Emu { order, .. } => *order,
                    Engine::Cuda(_) => {
                        return Err(Error::Internal("emulated launch on a GPU".into()));
                    }
                };
                emu::launch(file, name, *grid, *block, &a, order)
            }
            // SAFETY (the three arms below): the views were checked against their allocations
            // when the operation was issued, and the allocations outlive the graph.
            EmuOp::Copy { dst, src, bytes } => {
                unsafe { std::ptr::copy(*src as *const u8, *dst as *mut u8, *bytes) };
                Ok(())
            }
            EmuOp::Zero { dst, bytes } => {
                unsafe { std::ptr::write_bytes(*dst as *mut u8, 0, *bytes) };
                Ok(())
            }
            EmuOp::Fill32 { dst, n, bits } => {
                let d = unsafe { std::slice::from_raw_parts_mut(*dst as *mut u32, *n) };
                d.fill(*bits);
                Ok(())
            }
        }
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
        let c = match &self.engine {
            Engine::Cuda(c) => c,
            Engine::Emu { .. } => {
                check_entry(file, name)?;
                if cfg.shared_mem_bytes != 0 {
                    return Err(Error::Internal(format!(
                        "kernels/{}: {name} launched with dynamic shared memory, which the \
                         kernel emulator does not model",
                        file.name
                    )));
                }
                let op = EmuOp::Launch {
                    file: *file,
                    name,
                    grid: cfg.grid_dim,
                    block: cfg.block_dim,
                    args: args.0.iter().map(|a| a.bytes().to_vec()).collect(),
                };
                return self.timed(file.name, name, cfg.grid_dim, cfg.block_dim, || {
                    self.emu_op(op)
                });
            }
        };
        let f = self.function(c, file, name)?;
        let mut b = c.stream.launch_builder(&f);
        for v in &args.0 {
            v.push(&mut b);
        }
        self.timed(file.name, name, cfg.grid_dim, cfg.block_dim, || {
            // SAFETY: the caller guarantees that the arguments match the kernel signature and
            // address live memory; `args` outlives the launch call.
            let r = unsafe { b.launch(cfg) };
            drv(r, &format!("kernels/{}: launching {name}", file.name)).map(|_| ())
        })
    }
}

fn check_entry(file: &KernelFile, name: &str) -> Result<()> {
    if !file.entries.contains(&name) {
        return Err(Error::Internal(format!(
            "kernels/{}: no kernel '{name}' in its entry list",
            file.name
        )));
    }
    Ok(())
}

/// Kernel arguments, in the order of the kernel's C signature.
#[derive(Default)]
pub struct Args(Vec<Box<dyn ArgValue>>);

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
