// defines: the CUDA dialect of kernels/*.cu for a host C++ compiler, and ndt_emu_launch
//
// The kernel emulator: the kernel files compiled by the host's C++ compiler and run on the CPU,
// so that every launcher, kernel and training step of the CUDA backend can be checked where
// there is no GPU (NDT_CUDA_EMU=1; see docs/cuda.md). It is a checker, not a fast path.
//
// Execution model. A launch runs its blocks on as many CPU threads as there are cores
// (NDT_CUDA_EMU_THREADS sets the number); inside a block every CUDA thread is a fiber of its
// own (a stack and a context switch of a few instructions on x86-64, ucontext elsewhere),
// switched only at the points where CUDA threads communicate: __syncthreads, warp shuffles,
// ldmatrix and mma.sync. So a kernel sees the same values a GPU would give it whatever the
// interleaving of threads between those points, and the emulator reports, instead of hanging
// or guessing:
//   - a __syncthreads reached on different source lines by threads of one block;
//   - a warp operation (shuffle, ldmatrix, mma.sync) with a lane that has exited or sits at
//     another warp operation; a misaligned ldmatrix row or vector access;
//   - a launch whose arguments differ in count or size from the kernel's C signature;
//   - a read or write outside device memory: each allocation ends at an inaccessible page, and
//     the fault is caught and reported with the kernel, block and thread (up to 15 bytes past
//     an allocation whose size is not a multiple of 16 go unnoticed);
//   - an index outside a fixed-size array (shared memory, or a thread's local array): the
//     files are compiled with -fsanitize=bounds trapping, and the trap is caught the same way.
// Between two such points the threads of a block run one after another, first to last, or last
// to first with NDT_CUDA_EMU=reverse: a kernel that misses a barrier (a race a GPU shows only
// sometimes) gives results that depend on that order, so running the tests in both orders
// catches it where the results differ.
// Shared memory is one static (thread-local) array per declaration: each block sees the values
// the previous block left, never zeros it did not write. Warp operations need whole warps
// (blockDim a multiple of 32 where a kernel uses them), as the kernels assume.
#pragma once
#include <setjmp.h>
#include <signal.h>
#include <ucontext.h>

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#define NDT_EMU 1
#define __global__
#define __device__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static thread_local

struct uint3 {
    unsigned int x, y, z;
};
typedef uint3 dim3;

static thread_local uint3 threadIdx, blockIdx, blockDim, gridDim;

// Bit casts and correctly rounded arithmetic (the host's IEEE f32 operations, no contraction).
inline unsigned int __float_as_uint(float f) {
    unsigned int u;
    std::memcpy(&u, &f, 4);
    return u;
}
inline float __uint_as_float(unsigned int u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline int __float_as_int(float f) { return (int)__float_as_uint(f); }
inline float __int_as_float(int i) { return __uint_as_float((unsigned int)i); }
inline double __longlong_as_double(long long i) {
    double d;
    std::memcpy(&d, &i, 8);
    return d;
}
inline long long __double_as_longlong(double d) {
    long long i;
    std::memcpy(&i, &d, 8);
    return i;
}
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned int min(unsigned int a, unsigned int b) { return a < b ? a : b; }
inline unsigned int max(unsigned int a, unsigned int b) { return a > b ? a : b; }

struct float4 {
    float x, y, z, w;
};
struct uint2 {
    unsigned int x, y;
};

namespace ndt_emu {

#if defined(__x86_64__)
// A fiber's saved stack pointer; the callee-saved registers, MXCSR and the x87 control word
// sit on its stack.
struct Ctx {
    void* sp;
};

extern "C" void ndt_emu_switch(void** save_sp, void* load_sp);
asm(R"(
    .text
    .globl ndt_emu_switch
    .hidden ndt_emu_switch
    .type ndt_emu_switch, @function
ndt_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size ndt_emu_switch, .-ndt_emu_switch
)");

inline void ctx_switch(Ctx& from, Ctx& to) { ndt_emu_switch(&from.sp, to.sp); }

// A context that starts `fn` (which never returns) on the stack [stack, stack + size).
inline void ctx_make(Ctx& c, char* stack, size_t size, void (*fn)()) {
    uintptr_t top = ((uintptr_t)(stack + size)) & ~(uintptr_t)15;
    uint64_t* sp = (uint64_t*)top;
    *--sp = 0;               // fake return address of fn: fn starts as if called
    *--sp = (uint64_t)fn;    // where ndt_emu_switch returns to
    for (int i = 0; i < 6; i++) *--sp = 0;  // rbp rbx r12 r13 r14 r15
    --sp;
    unsigned int mxcsr;
    unsigned short fpucw;
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    asm volatile("fnstcw %0" : "=m"(fpucw));
    std::memcpy((char*)sp, &mxcsr, 4);
    std::memcpy((char*)sp + 4, &fpucw, 2);
    c.sp = sp;
}
#else
struct Ctx {
    ucontext_t uc;
};

inline void ctx_switch(Ctx& from, Ctx& to) { swapcontext(&from.uc, &to.uc); }

inline void ctx_make(Ctx& c, char* stack, size_t size, void (*fn)()) {
    getcontext(&c.uc);
    c.uc.uc_stack.ss_sp = stack;
    c.uc.uc_stack.ss_size = size;
    c.uc.uc_link = nullptr;
    makecontext(&c.uc, fn, 0);
}
#endif

enum State { RUNNABLE, WAITING, DONE };

struct Fiber {
    Ctx ctx;
    State state;
    uint3 tid;
};

// A warp operation in progress: the lanes that arrived, what they brought, the source line.
struct WarpOp {
    int arrived = 0;
    int line = 0;
    int kind = 0;  // 1 shuffle, 2 mma, 3 ldmatrix
    unsigned long long gen = 0;
    unsigned long long val[32];
    unsigned int mma_a[32][4], mma_b[32][2];
    float mma_c[32][4];
};

struct Block {
    std::vector<Fiber> fibers;
    std::vector<char> stacks;
    Ctx sched;
    int cur = 0;
    int live = 0;
    int bar_arrived = 0;
    int bar_line = 0;
    unsigned long long bar_gen = 0;
    std::vector<WarpOp> warps;
    bool failed = false;
    char err[512];
    const char* kernel = "";
    bool in_launch = false;
    bool reverse = false;  // NDT_CUDA_EMU=reverse: threads run last to first between barriers
    sigjmp_buf fault_jmp;
    void* fault_addr = nullptr;
    int fault_sig = 0;
    void (*entry)(void**) = nullptr;
    void** params = nullptr;
};

constexpr size_t STACK = 128 * 1024;

inline Block& blk() {
    static thread_local Block b;
    return b;
}

// Records the first error of the launch and stops every fiber of the block.
inline void fail(const char* fmt, ...) {
    Block& b = blk();
    if (b.failed) return;
    b.failed = true;
    int n = std::snprintf(b.err, sizeof b.err, "kernel %s, block (%u,%u,%u), thread (%u,%u,%u): ",
                          b.kernel, blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x, threadIdx.y,
                          threadIdx.z);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof b.err) std::vsnprintf(b.err + n, sizeof b.err - n, fmt, ap);
    va_end(ap);
}

// Back to the scheduler; returns when this fiber is resumed.
inline void yield() {
    Block& b = blk();
    ctx_switch(b.fibers[b.cur].ctx, b.sched);
}

// A gate: fibers arrive, and wait until the last expected one opens it (its generation moves
// on). Block barriers and warp operations are gates; so is a thread's exit, which may complete
// a block barrier the others wait at.
inline void open_gate(Block& b, int& arrived, unsigned long long& gen) {
    arrived = 0;
    gen++;
    for (Fiber& f : b.fibers)
        if (f.state == WAITING) f.state = RUNNABLE;
}

// Arrives at a gate that opens at `count` arrivals; returns once it is open. Opening any gate
// wakes every waiter, so a waiter whose own gate is still shut waits again (and counts as
// waiting for the deadlock check).
inline void pass_gate(int& arrived, unsigned long long& gen, int count) {
    Block& b = blk();
    unsigned long long g = gen;
    if (++arrived == count) {
        open_gate(b, arrived, gen);
        return;
    }
    while (gen == g && !b.failed) {
        b.fibers[b.cur].state = WAITING;
        yield();
    }
}

inline int linear_tid() {
    return (int)(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z));
}

inline void sync_block(int line) {
    Block& b = blk();
    if (b.bar_arrived == 0) {
        b.bar_line = line;
    } else if (b.bar_line != line) {
        fail("__syncthreads on line %d while other threads of the block wait at line %d", line,
             b.bar_line);
    }
    pass_gate(b.bar_arrived, b.bar_gen, b.live);
}

// Waits until all 32 lanes of this fiber's warp have arrived at warp operation `kind` on
// `line`; the last lane to arrive releases the others.
inline WarpOp& warp_arrive(int kind, int line) {
    Block& b = blk();
    int t = linear_tid();
    WarpOp& w = b.warps[t / 32];
    int nthreads = (int)(blockDim.x * blockDim.y * blockDim.z);
    if (nthreads % 32 != 0) fail("a warp operation in a block of %d threads (not whole warps)", nthreads);
    if (w.arrived == 0) {
        w.kind = kind;
        w.line = line;
    } else if (w.kind != kind || w.line != line) {
        fail("warp operation on line %d while other lanes of the warp wait at line %d", line,
             w.line);
    }
    return w;
}

inline void warp_wait(WarpOp& w) { pass_gate(w.arrived, w.gen, 32); }

template <class T>
inline T shfl_xor(unsigned int mask, T v, int o, int line) {
    static_assert(sizeof(T) <= 8, "shuffle of at most 64 bits");
    if (mask != 0xffffffffu) fail("warp shuffle with a partial mask %#x", mask);
    WarpOp& w = warp_arrive(1, line);
    int lane = linear_tid() & 31;
    unsigned long long bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    w.val[lane] = bits;
    warp_wait(w);
    bits = w.val[(lane ^ o) & 31];
    warp_wait(w);  // every lane has read before the slots are written again
    T r;
    std::memcpy(&r, &bits, sizeof(T));
    return r;
}

inline float bf16_lo(unsigned int pair) { return __uint_as_float(pair << 16); }
inline float bf16_hi(unsigned int pair) { return __uint_as_float(pair & 0xffff0000u); }

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 with the PTX fragment layouts:
// group g = lane / 4, t = lane % 4;
//   A 16x16: a[0] = A[g][2t..2t+1], a[1] = A[g+8][2t..], a[2] = A[g][2t+8..], a[3] = A[g+8][2t+8..]
//   B 16x8 (k x n): b[0] = B[2t..2t+1][g], b[1] = B[2t+8..2t+9][g]
//   C 16x8: c[0..1] = C[g][2t..2t+1], c[2..3] = C[g+8][2t..2t+1]
inline void mma_m16n8k16(float* d, const unsigned int* a, const unsigned int* b, int line) {
    WarpOp& w = warp_arrive(2, line);
    int lane = linear_tid() & 31;
    for (int i = 0; i < 4; i++) w.mma_a[lane][i] = a[i];
    for (int i = 0; i < 2; i++) w.mma_b[lane][i] = b[i];
    for (int i = 0; i < 4; i++) w.mma_c[lane][i] = d[i];
    warp_wait(w);
    float A[16][16], B[16][8];
    for (int l = 0; l < 32; l++) {
        int g = l / 4, t = l % 4;
        for (int h = 0; h < 2; h++) {
            int r = g + 8 * h;
            A[r][2 * t] = bf16_lo(w.mma_a[l][h]);
            A[r][2 * t + 1] = bf16_hi(w.mma_a[l][h]);
            A[r][2 * t + 8] = bf16_lo(w.mma_a[l][h + 2]);
            A[r][2 * t + 9] = bf16_hi(w.mma_a[l][h + 2]);
            B[2 * t + 8 * h][g] = bf16_lo(w.mma_b[l][h]);
            B[2 * t + 8 * h + 1][g] = bf16_hi(w.mma_b[l][h]);
        }
    }
    int g = lane / 4, t = lane % 4;
    for (int i = 0; i < 4; i++) {
        int r = g + 8 * (i / 2), c = 2 * t + (i % 2);
        float acc = w.mma_c[lane][i];
        for (int k = 0; k < 16; k++) acc += A[r][k] * B[k][c];
        d[i] = acc;
    }
    warp_wait(w);
}

// ldmatrix.sync.aligned.m8n8.x4.shared.b16: lane 8j + i gives the address of row i of matrix j
// (16 bytes, 16-byte aligned); lane l receives word (l / 4, l % 4) of matrix j in r[j].
inline void ldmatrix_x4(unsigned int* r, const void* row, int line) {
    if ((uintptr_t)row % 16 != 0) fail("ldmatrix row address %p is not 16-byte aligned", row);
    WarpOp& w = warp_arrive(3, line);
    int lane = linear_tid() & 31;
    w.val[lane] = (unsigned long long)(uintptr_t)row;
    warp_wait(w);
    for (int j = 0; j < 4; j++) {
        const unsigned char* src = (const unsigned char*)(uintptr_t)w.val[8 * j + lane / 4];
        std::memcpy(&r[j], src + 4 * (lane % 4), 4);
    }
    warp_wait(w);
}

inline void fiber_main() {
    Block& b = blk();
    b.entry(b.params);
    b.fibers[b.cur].state = DONE;
    b.live--;
    // Exited threads no longer hold back a block barrier.
    if (b.bar_arrived > 0 && b.bar_arrived == b.live) open_gate(b, b.bar_arrived, b.bar_gen);
    ctx_switch(b.fibers[b.cur].ctx, b.sched);
}

// Runs one block to completion; false (with b.err set) on an error or a deadlock.
inline bool run_block(Block& b) {
    int n = (int)b.fibers.size();
    b.live = n;
    b.bar_arrived = 0;
    for (WarpOp& w : b.warps) w.arrived = 0;
    for (int i = 0; i < n; i++) {
        Fiber& f = b.fibers[i];
        f.state = RUNNABLE;
        f.tid.x = i % blockDim.x;
        f.tid.y = (i / blockDim.x) % blockDim.y;
        f.tid.z = i / (blockDim.x * blockDim.y);
        ctx_make(f.ctx, b.stacks.data() + (size_t)i * STACK, STACK, fiber_main);
    }
    while (b.live > 0 && !b.failed) {
        bool ran = false;
        for (int j = 0; j < n && !b.failed; j++) {
            int i = b.reverse ? n - 1 - j : j;
            if (b.fibers[i].state != RUNNABLE) continue;
            b.cur = i;
            threadIdx = b.fibers[i].tid;
            ctx_switch(b.sched, b.fibers[i].ctx);
            ran = true;
        }
        if (!ran && b.live > 0 && !b.failed) {
            threadIdx = uint3{0, 0, 0};
            for (int i = 0; i < n; i++)
                if (b.fibers[i].state == WAITING) {
                    threadIdx = b.fibers[i].tid;
                    break;
                }
            fail("deadlock: %d threads wait at a barrier or warp operation that the others "
                 "(exited, or waiting elsewhere) never reach",
                 b.live);
        }
    }
    return !b.failed;
}

// SIGSEGV/SIGBUS while this thread runs an emulated kernel: back to `launch`, which reports
// it. Any other fault goes to the handler that was installed before.
static struct sigaction prev_segv, prev_bus, prev_ill;

inline void on_fault(int sig, siginfo_t* si, void* uc) {
    Block& b = blk();
    if (b.in_launch) {
        b.fault_addr = si->si_addr;
        b.fault_sig = sig;
        siglongjmp(b.fault_jmp, 1);
    }
    struct sigaction* prev = sig == SIGSEGV ? &prev_segv : sig == SIGBUS ? &prev_bus : &prev_ill;
    if ((prev->sa_flags & SA_SIGINFO) && prev->sa_sigaction) {
        prev->sa_sigaction(sig, si, uc);
    } else if (prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN) {
        prev->sa_handler(sig);
    } else {
        sigaction(sig, prev, nullptr);  // the fault repeats and takes the default action
    }
}

inline int install_fault_handler() {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &prev_segv);
    sigaction(SIGBUS, &sa, &prev_bus);
    sigaction(SIGILL, &sa, &prev_ill);
    return 0;
}

static const int fault_handler_installed = install_fault_handler();

struct Entry {
    const char* name;
    void (*call)(void**);
    int nargs;
    const size_t* sizes;
};

template <class F, F fn>
struct Tramp;

template <class... A, void (*fn)(A...)>
struct Tramp<void (*)(A...), fn> {
    static constexpr size_t sizes[sizeof...(A) + 1] = {sizeof(std::decay_t<A>)..., 0};
    static void call(void** p) { call_i(p, std::index_sequence_for<A...>{}); }
    template <size_t... I>
    static void call_i(void** p, std::index_sequence<I...>) {
        fn(*static_cast<std::decay_t<A>*>(p[I])...);
    }
    static Entry entry(const char* name) { return Entry{name, call, (int)sizeof...(A), sizes}; }
};

// One launch, shared by the worker threads that run its blocks.
struct Launch {
    const Entry* e;
    const unsigned int* grid;
    const unsigned int* block;
    void** params;
    bool reverse;
    unsigned long long total;
    std::atomic<unsigned long long> next{0};
    std::mutex mu;
    unsigned long long err_block = ~0ull;  // the first failing block (in launch order) reports
    int rc = 0;
    char err[512] = "";

    void report(unsigned long long blk_index, int code, const char* msg) {
        std::lock_guard<std::mutex> g(mu);
        if (blk_index < err_block) {
            err_block = blk_index;
            rc = code;
            std::snprintf(err, sizeof err, "%s", msg);
        }
    }
};

// A worker: takes blocks in turn until none is left or one has failed. Blocks do not
// communicate (the kernels use no global atomics), so which worker runs a block does not
// change its result.
inline void run_blocks(Launch* l) {
    Block& b = blk();
    unsigned int nthreads = l->block[0] * l->block[1] * l->block[2];
    b.reverse = l->reverse;
    b.kernel = l->e->name;
    b.entry = l->e->call;
    b.params = l->params;
    b.fibers.resize(nthreads);
    if (b.stacks.size() < (size_t)nthreads * STACK) b.stacks.resize((size_t)nthreads * STACK);
    b.warps.resize((nthreads + 31) / 32);
    blockDim = uint3{l->block[0], l->block[1], l->block[2]};
    gridDim = uint3{l->grid[0], l->grid[1], l->grid[2]};
    (void)fault_handler_installed;
    // Set before the jump point and read after it: volatile.
    volatile unsigned long long i = 0;
    b.in_launch = true;
    if (sigsetjmp(b.fault_jmp, 1) != 0) {
        b.in_launch = false;
        char msg[512];
        if (b.fault_sig == SIGILL)
            std::snprintf(msg, sizeof msg,
                          "kernel %s, block (%u,%u,%u), thread (%u,%u,%u): index out of bounds of "
                          "a fixed-size array (shared memory or a local array) at %p",
                          b.kernel, blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x,
                          threadIdx.y, threadIdx.z, b.fault_addr);
        else
            std::snprintf(msg, sizeof msg,
                          "kernel %s, block (%u,%u,%u), thread (%u,%u,%u): memory fault at %p, "
                          "outside every device allocation (past the end of a buffer, or a wild "
                          "pointer)",
                          b.kernel, blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x,
                          threadIdx.y, threadIdx.z, b.fault_addr);
        l->report(i, 3, msg);
        l->next.store(l->total);
        return;
    }
    while ((i = l->next.fetch_add(1)) < l->total) {
        unsigned long long idx = i;
        blockIdx = uint3{(unsigned int)(idx % l->grid[0]),
                         (unsigned int)((idx / l->grid[0]) % l->grid[1]),
                         (unsigned int)(idx / ((unsigned long long)l->grid[0] * l->grid[1]))};
        b.failed = false;
        if (!run_block(b)) {
            l->report(idx, 2, b.err);
            l->next.store(l->total);
            break;
        }
    }
    b.in_launch = false;
}

// Worker threads of one launching thread, kept for the next launches (each keeps its fiber
// stacks). `run` gives the launch to `helpers` of them and runs it on the caller too.
struct Pool {
    std::vector<std::thread> threads;
    std::mutex mu;
    std::condition_variable wake, done;
    Launch* job = nullptr;
    unsigned long long gen = 0;
    unsigned int helpers = 0;
    unsigned int busy = 0;
    bool quit = false;

    void work(unsigned int index) {
        unsigned long long seen = 0;
        for (;;) {
            Launch* l;
            {
                std::unique_lock<std::mutex> g(mu);
                wake.wait(g, [&] { return quit || gen != seen; });
                if (quit) return;
                seen = gen;
                if (index >= helpers) continue;
                l = job;
            }
            run_blocks(l);
            std::lock_guard<std::mutex> g(mu);
            if (--busy == 0) done.notify_all();
        }
    }

    void run(Launch* l, unsigned int n) {
        while (threads.size() < n) {
            unsigned int index = (unsigned int)threads.size();
            threads.emplace_back([this, index] { work(index); });
        }
        {
            std::lock_guard<std::mutex> g(mu);
            job = l;
            helpers = n;
            busy = n;
            gen++;
        }
        wake.notify_all();
        run_blocks(l);
        std::unique_lock<std::mutex> g(mu);
        done.wait(g, [&] { return busy == 0; });
    }

    ~Pool() {
        {
            std::lock_guard<std::mutex> g(mu);
            quit = true;
        }
        wake.notify_all();
        for (std::thread& t : threads) t.join();
    }
};

inline Pool& pool() {
    static thread_local Pool p;
    return p;
}

inline int launch(const Entry* table, int count, const char* name, const unsigned int* grid,
                  const unsigned int* block, void** params, const size_t* sizes, int nargs,
                  int reverse, unsigned int threads, char* err, size_t errlen) {
    const Entry* e = nullptr;
    for (int i = 0; i < count; i++)
        if (std::strcmp(table[i].name, name) == 0) e = &table[i];
    if (!e) {
        std::snprintf(err, errlen, "no kernel '%s' in this module", name);
        return 1;
    }
    if (e->nargs != nargs) {
        std::snprintf(err, errlen, "kernel %s takes %d arguments, the launch passed %d", name,
                      e->nargs, nargs);
        return 1;
    }
    for (int i = 0; i < nargs; i++)
        if (e->sizes[i] != sizes[i]) {
            std::snprintf(err, errlen,
                          "kernel %s: argument %d is %zu bytes in the kernel, %zu in the launch",
                          name, i, e->sizes[i], sizes[i]);
            return 1;
        }
    unsigned int nthreads = block[0] * block[1] * block[2];
    if (nthreads == 0 || nthreads > 1024 || grid[0] * grid[1] * grid[2] == 0 || grid[1] > 65535 ||
        grid[2] > 65535) {
        std::snprintf(err, errlen, "kernel %s: invalid launch grid (%u,%u,%u) block (%u,%u,%u)",
                      name, grid[0], grid[1], grid[2], block[0], block[1], block[2]);
        return 1;
    }
    unsigned long long total = (unsigned long long)grid[0] * grid[1] * grid[2];
    Launch l{e, grid, block, params, reverse != 0, total};
    unsigned int workers = threads < 1 ? 1 : threads;
    if (workers > total) workers = (unsigned int)total;
    pool().run(&l, workers - 1);
    if (l.rc != 0) std::snprintf(err, errlen, "%s", l.err);
    return l.rc;
}

}  // namespace ndt_emu

// Vector accesses with the GPU's alignment rule checked (a misaligned one faults there).
inline float4 ndt_ld_f4(const float* p) {
    if ((uintptr_t)p % 16 != 0)
        ndt_emu::fail("16-byte load from %p, which is not 16-byte aligned", (const void*)p);
    float4 v;
    std::memcpy(&v, p, 16);
    return v;
}
inline uint2 ndt_ld_u2(const void* p) {
    if ((uintptr_t)p % 8 != 0)
        ndt_emu::fail("8-byte load from %p, which is not 8-byte aligned", p);
    uint2 v;
    std::memcpy(&v, p, 8);
    return v;
}
inline void ndt_st_u2(void* p, unsigned int lo, unsigned int hi) {
    if ((uintptr_t)p % 8 != 0) ndt_emu::fail("8-byte store to %p, which is not 8-byte aligned", p);
    uint2 v{lo, hi};
    std::memcpy(p, &v, 8);
}

#define __syncthreads() ndt_emu::sync_block(__LINE__)
#define __shfl_xor_sync(mask, v, o) ndt_emu::shfl_xor((mask), (v), (o), __LINE__)
#define NDT_EMU_MMA_M16N8K16(d, a, b) ndt_emu::mma_m16n8k16((d), (a), (b), __LINE__)
#define NDT_EMU_LDMATRIX_X4(r, row) ndt_emu::ldmatrix_x4((r), (row), __LINE__)
