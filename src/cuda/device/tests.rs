//! The live-allocation checks of the safe memory operations, on the kernel emulator.

use super::*;

fn emu() -> Gpu {
    Gpu::emulated(emu::Order::FirstToLast)
}

/// A `Gpu` moves between threads as before the engines were split.
#[test]
fn gpu_is_send() {
    fn send<T: Send>() {}
    send::<Gpu>();
}

#[test]
fn live_buffer_round_trips() {
    let g = emu();
    let b = g.upload_new(&[1.0f32, 2.0, 3.0]).unwrap();
    let c = g.alloc::<f32>(3).unwrap();
    g.copy(c.dev(), b.dev(), 3).unwrap();
    assert_eq!(g.download(c.dev()).unwrap(), vec![1.0, 2.0, 3.0]);
    g.fill_f32(c.dev().slice(1, 2), 7.0).unwrap();
    assert_eq!(g.download(c.dev()).unwrap(), vec![1.0, 7.0, 7.0]);
    g.zero(c.dev().slice(2, 1)).unwrap();
    assert_eq!(g.download(c.dev()).unwrap(), vec![1.0, 7.0, 0.0]);
    assert_eq!(g.mem().now(), 24);
    drop(b);
    assert_eq!(g.mem().now(), 12);
    assert_eq!(g.mem().peak(), 24);
}

#[test]
fn views_of_dropped_buffers_are_refused() {
    let g = emu();
    let live = g.alloc::<f32>(4).unwrap();
    let b = g.alloc::<f32>(4).unwrap();
    let stale = b.dev();
    drop(b);
    let refused = |r: Result<()>| match r {
        Err(Error::Internal(m)) => assert!(m.contains("not inside a live allocation"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    };
    refused(g.upload(stale, &[1.0; 4]));
    refused(g.download(stale).map(|_| ()));
    refused(g.copy(live.dev(), stale, 4));
    refused(g.copy(stale, live.dev(), 4));
    refused(g.zero(stale));
    refused(g.fill_f32(stale, 1.0));
    // The live buffer is still usable.
    g.fill_f32(live.dev(), 2.0).unwrap();
    assert_eq!(g.download(live.dev()).unwrap(), vec![2.0; 4]);
}

#[test]
fn altered_and_foreign_views_are_refused() {
    let g = emu();
    let b = g.alloc::<f32>(4).unwrap();
    let mut long = b.dev();
    long.len = 5;
    assert!(g.download(long).is_err());
    let mut moved = b.dev();
    moved.ptr += 4;
    assert!(g.zero(moved).is_err());
    let other = emu();
    let theirs = other.alloc::<f32>(4).unwrap();
    assert!(g.upload(theirs.dev(), &[0.0; 4]).is_err());
}

#[test]
fn replay_after_a_buffer_is_dropped_is_refused() {
    let g = emu();
    let a = g.upload_new(&[5.0f32, 6.0]).unwrap();
    let b = g.alloc::<f32>(2).unwrap();
    let graph = g.capture(|| g.copy(b.dev(), a.dev(), 2)).unwrap();
    g.replay(&graph).unwrap();
    assert_eq!(g.download(b.dev()).unwrap(), vec![5.0, 6.0]);
    drop(b);
    assert!(g.replay(&graph).is_err());
}
