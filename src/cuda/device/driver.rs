//! The CUDA driver engine: one context, one working stream, the kernel modules compiled by
//! NVRTC and loaded lazily (one per kernel file), launched through `cudarc`.

use super::args::Args;
use super::engine::{Engine, Mem, check_entry};
use super::graph::Graph;
use super::{DeviceInfo, drv};
use crate::cuda::kernels::KernelFile;
use crate::cuda::nvrtc::{Arch, Nvrtc};
use crate::cuda::profile::{self, Stamp};
use crate::error::{Error, Result};
use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream, LaunchConfig};
use cudarc::driver::{result, sys};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

pub(super) struct CudaEngine {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    nvrtc: Nvrtc,
    arch: Arch,
    modules: RefCell<HashMap<&'static str, Arc<CudaModule>>>,
    functions: RefCell<HashMap<(&'static str, &'static str), CudaFunction>>,
}

/// Whether a CUDA driver library can be opened; never panics.
fn driver_present() -> bool {
    // SAFETY: only tries to open the library by its usual names.
    unsafe { sys::is_culib_present() }
}

impl CudaEngine {
    /// Opens device `ordinal`. Every failure (no driver, no device, no NVRTC, an unusable
    /// driver, a device older than sm_80) is an `Error::Cuda` saying what is missing.
    pub(super) fn open(ordinal: usize) -> Result<(CudaEngine, DeviceInfo)> {
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
        let engine = CudaEngine {
            ctx,
            stream,
            nvrtc,
            arch: Arch::new(major as u32, minor as u32),
            modules: RefCell::new(HashMap::new()),
            functions: RefCell::new(HashMap::new()),
        };
        Ok((engine, info))
    }

    /// Kernel `name` of `file`, compiling (or taking from the cache) and loading the module on
    /// first use (refused while capturing).
    fn function(
        &self,
        file: &KernelFile,
        name: &'static str,
        capturing: bool,
    ) -> Result<CudaFunction> {
        if let Some(f) = self.functions.borrow().get(&(file.name, name)) {
            return Ok(f.clone());
        }
        check_entry(file, name)?;
        let module = self.module(file, capturing)?;
        let f = drv(
            module.load_function(name),
            &format!("kernels/{}: loading kernel {name}", file.name),
        )?;
        self.functions
            .borrow_mut()
            .insert((file.name, name), f.clone());
        Ok(f)
    }

    fn module(&self, file: &KernelFile, capturing: bool) -> Result<Arc<CudaModule>> {
        if let Some(m) = self.modules.borrow().get(file.name) {
            return Ok(m.clone());
        }
        if capturing {
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

    fn bind(&self) -> Result<()> {
        drv(self.ctx.bind_to_thread(), "binding the context")
    }
}

impl Engine for CudaEngine {
    fn is_emulated(&self) -> bool {
        false
    }

    fn stream(&self) -> Option<&Arc<CudaStream>> {
        Some(&self.stream)
    }

    fn load_all(&self) -> Result<()> {
        for f in crate::cuda::kernels::ALL {
            for &name in f.entries {
                self.function(f, name, false)?;
            }
        }
        Ok(())
    }

    fn alloc(&self, bytes: usize, context: &str) -> Result<Mem> {
        let s = self.stream.alloc_zeros::<u8>(bytes).map_err(|e| {
            Error::Cuda(format!(
                "allocating {:.1} MiB {context}: {e}",
                bytes as f64 / (1 << 20) as f64
            ))
        })?;
        Ok(Mem::Cuda(s))
    }

    unsafe fn upload(&self, dst: u64, src: &[u8]) -> Result<()> {
        self.bind()?;
        // SAFETY: the caller guarantees room at `dst`; a host-to-device copy from pageable
        // memory has read `src` when it returns.
        drv(
            unsafe { result::memcpy_htod_async(dst, src, self.stream.cu_stream()) },
            "copying to the device",
        )
    }

    unsafe fn download(&self, src: u64, dst: &mut [u8]) -> Result<()> {
        self.bind()?;
        // SAFETY: the caller guarantees `dst.len()` live bytes at `src`; the stream is
        // synchronised before `dst` is read or released.
        drv(
            unsafe { result::memcpy_dtoh_async(dst, src, self.stream.cu_stream()) },
            "copying from the device",
        )?;
        self.sync()
    }

    unsafe fn copy(&self, dst: u64, src: u64, bytes: usize, _capturing: bool) -> Result<()> {
        self.bind()?;
        // SAFETY: the caller guarantees both ranges.
        drv(
            unsafe { result::memcpy_dtod_async(dst, src, bytes, self.stream.cu_stream()) },
            "device copy",
        )
    }

    unsafe fn zero(&self, dst: u64, bytes: usize, _capturing: bool) -> Result<()> {
        self.bind()?;
        // SAFETY: the caller guarantees the range.
        drv(
            unsafe { result::memset_d8_async(dst, 0, bytes, self.stream.cu_stream()) },
            "zeroing device memory",
        )
    }

    unsafe fn fill32(&self, dst: u64, n: usize, bits: u32, _capturing: bool) -> Result<()> {
        self.bind()?;
        // SAFETY: the caller guarantees `n` live 32-bit words at `dst`.
        drv(
            unsafe { sys::cuMemsetD32Async(dst, bits, n, self.stream.cu_stream()).result() },
            "filling device memory",
        )
    }

    fn prepare(
        &self,
        file: &KernelFile,
        name: &'static str,
        _cfg: &LaunchConfig,
        capturing: bool,
    ) -> Result<()> {
        self.function(file, name, capturing).map(|_| ())
    }

    unsafe fn launch(
        &self,
        file: &KernelFile,
        name: &'static str,
        cfg: LaunchConfig,
        args: &Args,
        capturing: bool,
    ) -> Result<()> {
        let f = self.function(file, name, capturing)?;
        let mut b = self.stream.launch_builder(&f);
        for v in &args.0 {
            v.push(&mut b);
        }
        // SAFETY: the caller guarantees that the arguments match the kernel signature and
        // address live memory; `args` outlives the launch call.
        let r = unsafe { b.launch(cfg) };
        drv(r, &format!("kernels/{}: launching {name}", file.name)).map(|_| ())
    }

    fn sync(&self) -> Result<()> {
        drv(self.stream.synchronize(), "synchronising the stream")
    }

    fn used_mem(&self) -> Result<Option<usize>> {
        let (free, total) = drv(self.ctx.mem_get_info(), "reading memory use")?;
        Ok(Some(total - free))
    }

    fn begin_capture(&self) -> Result<()> {
        drv(
            self.stream
                .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL),
            "starting graph capture",
        )
    }

    fn end_capture(&self) -> Result<Graph> {
        let graph = self.stream.end_capture(CUgraphInstantiate_flags(0));
        let g = drv(graph, "instantiating the training-step graph")?
            .ok_or_else(|| Error::Cuda("graph capture produced no graph".into()))?;
        Ok(Graph::Cuda(g))
    }

    fn replay(&self, g: &Graph) -> Result<()> {
        match g {
            Graph::Cuda(g) => drv(g.launch(), "launching the training-step graph"),
            Graph::Emu(_) => Err(Error::Internal(
                "a graph of the kernel emulator replayed on a GPU".into(),
            )),
        }
    }

    fn bracket(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<Stamp> {
        profile::bracket(&self.ctx, &self.stream, f).map(|((), s)| s)
    }
}
