//! System services the standard library does not offer: epoll, eventfd, a
//! shared anonymous mapping, signal masks, process liveness, a monotonic clock
//! shared by all processes, and a robust process-shared mutex. Bottom layer:
//! imports nothing of the crate. Every `unsafe` here has its SAFETY line.
#![allow(unsafe_code)]

use std::ffi::c_int;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

fn cvt(r: c_int) -> io::Result<c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

pub const EV_IN: u32 = libc::EPOLLIN as u32;
pub const EV_RDHUP: u32 = libc::EPOLLRDHUP as u32;

pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; on success we own the new fd.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: fd is a fresh descriptor that nothing else owns.
        Ok(Epoll { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    fn ctl(&self, op: c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: ev is a valid epoll_event for the duration of the call.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) }).map(|_| ())
    }

    pub fn add(&self, fd: &impl AsRawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd.as_raw_fd(), events, token)
    }

    pub fn modify(&self, fd: &impl AsRawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd.as_raw_fd(), events, token)
    }

    pub fn delete(&self, fd: &impl AsRawFd) {
        let _ = self.ctl(libc::EPOLL_CTL_DEL, fd.as_raw_fd(), 0, 0);
    }

    /// Waits for events; returns their (token, events) pairs in `out`.
    pub fn wait(&self, out: &mut Vec<(u64, u32)>, timeout: Duration) -> io::Result<()> {
        const MAX: usize = 256;
        thread_local! {
            // One buffer per thread, never zeroed: the kernel fills what it returns.
            static BUF: std::cell::RefCell<Vec<libc::epoll_event>> = std::cell::RefCell::new(Vec::with_capacity(MAX));
        }
        // Rounded up: a timeout rounded down to 0 ms would spin until the deadline.
        let ms = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as c_int;
        out.clear();
        BUF.with(|b| {
            let mut evs = b.borrow_mut();
            evs.clear();
            // SAFETY: the kernel writes at most MAX events into the vector's spare capacity.
            let n = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), evs.as_mut_ptr(), MAX as c_int, ms) };
            if n < 0 {
                let e = io::Error::last_os_error();
                return if e.kind() == io::ErrorKind::Interrupted { Ok(()) } else { Err(e) };
            }
            // SAFETY: epoll_wait initialised the first n entries.
            unsafe { evs.set_len(n as usize) };
            out.extend(evs.iter().map(|ev| (ev.u64, ev.events)));
            Ok(())
        })
    }
}

/// An eventfd to wake the accept thread.
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes no pointers; on success we own the new fd.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: fd is a fresh descriptor that nothing else owns.
        Ok(EventFd { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    pub fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local.
        unsafe { libc::write(self.fd.as_raw_fd(), &one as *const u64 as *const libc::c_void, 8) };
    }

    pub fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live local.
        unsafe { libc::read(self.fd.as_raw_fd(), &mut v as *mut u64 as *mut libc::c_void, 8) };
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// An anonymous shared mapping created in the parent and inherited by every
/// child through fork: an array of `T` (zeroed memory must be a valid `T`,
/// as it is for structs of atomics).
pub struct SharedArray<T: 'static> {
    ptr: *mut T,
    len: usize,
    creator: u32,
}

// SAFETY: the mapping is only accessed through shared references to atomics.
unsafe impl<T: Sync> Send for SharedArray<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for SharedArray<T> {}

/// Declares a type `ZeroShareable`. Use it only on `#[repr(C)]` types made
/// of atomics (and arrays and structs of them): their all-zero bit pattern is
/// a valid value and they may be shared between processes.
#[macro_export]
macro_rules! zero_shareable {
    ($t:ty) => {
        // SAFETY: the caller declares a #[repr(C)] type made only of atomics (see os::ZeroShareable).
        #[allow(unsafe_code)]
        unsafe impl $crate::os::ZeroShareable for $t {}
    };
}

/// Marker for types whose all-zero bit pattern is a valid value and that are
/// safe to share between processes (atomics, arrays and structs of them).
///
/// # Safety
/// Implement only for `#[repr(C)]` types made of atomics.
pub unsafe trait ZeroShareable: Sync {}

impl<T: ZeroShareable> SharedArray<T> {
    pub fn new(len: usize) -> io::Result<SharedArray<T>> {
        let bytes = len.max(1) * std::mem::size_of::<T>();
        // SAFETY: an anonymous mapping; no file, no fixed address.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(SharedArray { ptr: p as *mut T, len, creator: std::process::id() })
    }

    pub fn get(&self) -> &[T] {
        // SAFETY: the mapping holds `len` zero-initialised T (valid by ZeroShareable) and lives as long as self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl<T> Drop for SharedArray<T> {
    fn drop(&mut self) {
        // Only the process that created the mapping releases it: children keep
        // theirs until they exit, whatever their copy of this value does.
        if std::process::id() == self.creator {
            // SAFETY: ptr/len describe the mapping made in new(); no reference outlives self.
            unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len.max(1) * std::mem::size_of::<T>()) };
        }
    }
}

/// Runs `f` (which spawns a thread) with every signal blocked in the calling
/// thread, so that the new thread starts with them blocked: httpd's signal
/// handlers (prefork's `just_die` exits the child) must never run on a thread
/// of ours. The calling thread's mask is restored afterwards.
pub fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: sigset_t is plain data that sigfillset initialises; pthread_sigmask
    // only reads `all` and writes `old`, both live locals.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        let r = f();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        r
    }
}

/// True while a process with this pid exists.
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Milliseconds of CLOCK_MONOTONIC: one clock for every process of the
/// machine (so children can compare each other's stamps), and never stepped
/// by the wall clock.
pub fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into a live local.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1000) + (ts.tv_nsec as u64) / 1_000_000
}

/// A mutex shared by every process that inherits it through fork: a
/// pthread mutex marked PROCESS_SHARED and ROBUST in an anonymous shared
/// mapping. When the process holding it dies, the next locker gets
/// EOWNERDEAD, marks it consistent and goes on: no spinning on pids.
pub struct RobustMutex {
    m: *mut libc::pthread_mutex_t,
    creator: u32,
}

// SAFETY: the pthread mutex is made for use from many threads and processes.
unsafe impl Send for RobustMutex {}
// SAFETY: as above.
unsafe impl Sync for RobustMutex {}

pub struct RobustGuard<'a> {
    m: &'a RobustMutex,
}

impl RobustMutex {
    pub fn new() -> io::Result<RobustMutex> {
        let size = std::mem::size_of::<libc::pthread_mutex_t>();
        // SAFETY: an anonymous shared mapping; no file, no fixed address.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let m = p as *mut libc::pthread_mutex_t;
        // SAFETY: attr is initialised by pthread_mutexattr_init before use and
        // destroyed after; m points to fresh writable memory of the right size.
        let r = unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            libc::pthread_mutexattr_init(&mut attr);
            libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
            libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
            let r = libc::pthread_mutex_init(m, &attr);
            libc::pthread_mutexattr_destroy(&mut attr);
            r
        };
        if r != 0 {
            // SAFETY: the mapping made above, not used by anyone else.
            unsafe { libc::munmap(p, size) };
            return Err(io::Error::from_raw_os_error(r));
        }
        Ok(RobustMutex { m, creator: std::process::id() })
    }

    pub fn lock(&self) -> RobustGuard<'_> {
        loop {
            // SAFETY: m was initialised in new() and lives as long as self.
            let r = unsafe { libc::pthread_mutex_lock(self.m) };
            match r {
                0 => return RobustGuard { m: self },
                libc::EOWNERDEAD => {
                    // The holder died; what it guarded is made of atomics that
                    // every writer checks before it writes: take it over.
                    // SAFETY: we own the mutex now (EOWNERDEAD leaves it locked by us).
                    unsafe { libc::pthread_mutex_consistent(self.m) };
                    return RobustGuard { m: self };
                }
                libc::EINTR | libc::EAGAIN => continue,
                // ENOTRECOVERABLE cannot happen: every EOWNERDEAD is made consistent.
                _ => return RobustGuard { m: self },
            }
        }
    }
}

impl Drop for RobustGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: the guard exists only while this thread holds the mutex.
        unsafe { libc::pthread_mutex_unlock(self.m.m) };
    }
}

impl Drop for RobustMutex {
    fn drop(&mut self) {
        // Only the creating process unmaps (children keep theirs until they exit).
        if std::process::id() == self.creator {
            // SAFETY: the mapping made in new(); no guard outlives self.
            unsafe { libc::munmap(self.m as *mut libc::c_void, std::mem::size_of::<libc::pthread_mutex_t>()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process that dies holding the mutex (even one left a zombie, which
    /// kill(pid, 0) still reports alive) does not block the next locker.
    #[test]
    fn robust_mutex_survives_a_dead_holder() {
        let m = RobustMutex::new().unwrap();
        // SAFETY: the child only locks the shared mutex and exits at once.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let g = m.lock();
            std::mem::forget(g);
            // SAFETY: _exit ends the forked child without running Rust destructors.
            unsafe { libc::_exit(0) };
        }
        // Wait for the child to be gone but do not reap it: a zombie holds the lock.
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            // SAFETY: siginfo_t is plain data; zero is a valid value.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: waitid writes into a live local; WNOWAIT leaves the child a zombie.
            let r = unsafe { libc::waitid(libc::P_PID, pid as u32, &mut info, libc::WEXITED | libc::WNOWAIT) };
            if r == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(pid_alive(pid), "a zombie still answers kill(pid, 0): the old lock spun on it");
        let t = std::time::Instant::now();
        drop(m.lock());
        assert!(t.elapsed() < Duration::from_secs(1), "locking after the holder died took {:?}", t.elapsed());
        drop(m.lock());
        let mut st = 0;
        // SAFETY: reaps our own child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
    }

    #[test]
    fn monotonic_clock_moves_forward() {
        let a = monotonic_ms();
        std::thread::sleep(Duration::from_millis(20));
        let b = monotonic_ms();
        assert!(b >= a + 15 && b < a + 2000, "{a} {b}");
    }
}
