//! Every `unsafe` of the module lives here: the functions the C shim calls
//! (see c-shim/rust_api.h), the shim's services to Rust (bindgen of
//! c-shim/shim.h), and the few system calls the standard library lacks
//! (epoll, eventfd, SO_KEEPALIVE, a shared anonymous mapping).
//!
//! No Rust panic crosses into C: every exported function runs its body under
//! `catch_unwind` and answers a safe default if it panics.

use std::ffi::{c_char, c_int, CStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

#[allow(non_camel_case_types, non_upper_case_globals, dead_code)]
mod sys {
    include!(concat!(env!("OUT_DIR"), "/shim_bindings.rs"));
}

pub use sys::prx_log_level as Level;

use crate::api;

// ---------------------------------------------------------------------------
// Services of the C shim
// ---------------------------------------------------------------------------

/// Writes one line to httpd's error log (stderr in unit tests).
pub fn log(level: Level, msg: &str) {
    #[cfg(not(test))]
    {
        let c = std::ffi::CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
        // SAFETY: prx_log copies the NUL-terminated string into the log line and keeps no pointer.
        unsafe { sys::prx_log(level as c_int, c.as_ptr()) }
    }
    #[cfg(test)]
    eprintln!("[{:?}] {msg}", level);
}

pub fn log_enabled(level: Level) -> bool {
    #[cfg(not(test))]
    {
        // SAFETY: reads httpd's log configuration only.
        unsafe { sys::prx_log_enabled(level as c_int) != 0 }
    }
    #[cfg(test)]
    {
        let _ = level;
        true
    }
}

/// Tells the shim that node `node` has an idle connection in this child.
pub fn node_ready(node: usize) {
    #[cfg(not(test))]
    // SAFETY: the shim only walks its per-process worker table, built in child_init and never freed before exit.
    unsafe {
        sys::prx_node_ready(node as c_int)
    }
    #[cfg(test)]
    let _ = node;
}

// ---------------------------------------------------------------------------
// The API exported to the C shim
// ---------------------------------------------------------------------------

fn guard<T>(default: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => {
            log(Level::PRX_LOG_ERR, "internal error (a panic was caught at the C boundary)");
            default
        }
    }
}

/// Copies a message into the caller's buffer, truncated and NUL-terminated.
fn write_err(msg: &str, buf: *mut c_char, len: usize) {
    if buf.is_null() || len == 0 {
        return;
    }
    let bytes = msg.as_bytes();
    let n = bytes.len().min(len - 1);
    // SAFETY: the shim passes a writable buffer of `len` bytes; we write n + 1 <= len bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf as *mut u8, n);
        *buf.add(n) = 0;
    }
}

fn str_arg<'a>(p: *const c_char) -> Option<&'a str> {
    if p.is_null() {
        return None;
    }
    // SAFETY: the shim passes NUL-terminated strings that outlive the call.
    unsafe { CStr::from_ptr(p) }.to_str().ok()
}

fn result_to_c(r: Result<(), String>, err: *mut c_char, errlen: usize) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => {
            write_err(&e, err, errlen);
            -1
        }
    }
}

#[no_mangle]
pub extern "C" fn prx_cfg_reset() {
    guard((), api::cfg_reset)
}

#[no_mangle]
pub extern "C" fn prx_cfg_args(
    name: *const c_char,
    argc: c_int,
    argv: *const *const c_char,
    err: *mut c_char,
    errlen: usize,
) -> c_int {
    guard(-1, || {
        let Some(name) = str_arg(name) else { return -1 };
        let mut args = Vec::new();
        for i in 0..argc.max(0) as usize {
            // SAFETY: httpd's TAKE_ARGV hands argc valid string pointers.
            let p = unsafe { *argv.add(i) };
            match str_arg(p) {
                Some(s) => args.push(s),
                None => return result_to_c(Err("arguments must be valid UTF-8".into()), err, errlen),
            }
        }
        result_to_c(api::cfg_args(name, &args), err, errlen)
    })
}

#[no_mangle]
pub extern "C" fn prx_cfg_global(name: *const c_char, value: *const c_char, err: *mut c_char, errlen: usize) -> c_int {
    guard(-1, || {
        let r = match (str_arg(name), str_arg(value)) {
            (Some(n), Some(v)) => api::cfg_global(n, v),
            _ => Err("arguments must be valid UTF-8".into()),
        };
        result_to_c(r, err, errlen)
    })
}

#[no_mangle]
pub extern "C" fn prx_cfg_saw_worker(name: *const c_char) {
    guard((), || {
        if let Some(n) = str_arg(name) {
            api::cfg_saw_worker(n)
        }
    })
}

#[no_mangle]
pub extern "C" fn prx_cfg_check(err: *mut c_char, errlen: usize) -> c_int {
    guard(-1, || result_to_c(api::cfg_check(), err, errlen))
}

#[no_mangle]
pub extern "C" fn prx_post_config(
    server_limit: c_int,
    max_children: c_int,
    threads: c_int,
    err: *mut c_char,
    errlen: usize,
) -> c_int {
    guard(-1, || {
        let n = |v: c_int| v.max(1) as usize;
        result_to_c(api::post_config(n(server_limit), n(max_children), n(threads)), err, errlen)
    })
}

#[no_mangle]
pub extern "C" fn prx_pconf_cleanup() {
    guard((), api::pconf_cleanup)
}

#[no_mangle]
pub extern "C" fn prx_node_for_worker(name: *const c_char) -> c_int {
    guard(-1, || match str_arg(name).and_then(api::node_for_worker) {
        Some(i) => i as c_int,
        None => -1,
    })
}

#[no_mangle]
pub extern "C" fn prx_worker_reserved(name: *const c_char) -> c_int {
    guard(1, || str_arg(name).is_some_and(api::worker_reserved) as c_int)
}

#[no_mangle]
pub extern "C" fn prx_node_count() -> c_int {
    guard(0, || api::node_count() as c_int)
}

#[no_mangle]
pub extern "C" fn prx_child_init() {
    guard((), api::child_init)
}

#[no_mangle]
pub extern "C" fn prx_child_stopping(graceful: c_int) {
    guard((), || api::child_stopping(graceful != 0))
}

#[no_mangle]
pub extern "C" fn prx_child_exit() {
    guard((), api::child_exit)
}

#[no_mangle]
pub extern "C" fn prx_take_fd(node: c_int, nowait: c_int, wait_ms: *mut c_int) -> c_int {
    guard(-1, || {
        if node < 0 {
            return -1;
        }
        let (fd, wait) = api::take_fd(node as usize, nowait != 0);
        if !wait_ms.is_null() {
            // SAFETY: the shim passes a pointer to a local int.
            unsafe { *wait_ms = wait.as_millis().min(i32::MAX as u128) as c_int };
        }
        match fd {
            Some(fd) => fd.into_raw_fd_for_c(),
            None => -1,
        }
    })
}

#[no_mangle]
pub extern "C" fn prx_fd_retired(node: c_int, fd: c_int) {
    guard((), || {
        if node >= 0 {
            api::fd_retired(node as usize, fd)
        }
    })
}

#[no_mangle]
pub extern "C" fn prx_link_released(fd: c_int) {
    guard((), || api::link_released(fd))
}

#[no_mangle]
pub extern "C" fn prx_link_reusable(node: c_int, fd: c_int) -> c_int {
    guard(0, || (node >= 0 && api::link_reusable(node as usize, fd)) as c_int)
}

#[no_mangle]
pub extern "C" fn prx_status_render(json: c_int, len: *mut usize) -> *mut c_char {
    guard(std::ptr::null_mut(), || {
        let doc = api::status_render(json != 0);
        let c = std::ffi::CString::new(doc).unwrap_or_default();
        if !len.is_null() {
            // SAFETY: the shim passes a pointer to a local size_t.
            unsafe { *len = c.as_bytes().len() };
        }
        c.into_raw()
    })
}

#[no_mangle]
pub extern "C" fn prx_string_free(s: *mut c_char) {
    guard((), || {
        if !s.is_null() {
            // SAFETY: `s` came from CString::into_raw in prx_status_render and is freed once.
            drop(unsafe { std::ffi::CString::from_raw(s) });
        }
    })
}

/// The reply of the MCMP receiver, as c-shim/rust_api.h declares it. Every
/// string is NUL-terminated and owned by Rust until prx_mcmp_reply_free.
#[repr(C)]
pub struct McmpReplyC {
    status: c_int,
    body: *mut c_char,
    body_len: usize,
    err_type: *mut c_char,
    err_mess: *mut c_char,
    join: c_int,
    join_new: c_int,
    node: c_int,
    balancer: *mut c_char,
    worker: *mut c_char,
    route: *mut c_char,
}

fn c_string(s: &str) -> *mut c_char {
    std::ffi::CString::new(s.replace('\0', "")).unwrap_or_default().into_raw()
}

fn free_c_string(p: &mut *mut c_char) {
    if !p.is_null() {
        // SAFETY: every non-null string of McmpReplyC came from c_string (CString::into_raw) and is freed once: the field is nulled here.
        drop(unsafe { std::ffi::CString::from_raw(*p) });
        *p = std::ptr::null_mut();
    }
}

fn fill_reply(out: &mut McmpReplyC, r: crate::mcmp::Reply) {
    use crate::mcmp::Join;
    out.status = r.status as c_int;
    out.body_len = r.body.len();
    out.body = c_string(&r.body);
    if let Some(e) = &r.error {
        out.err_type = c_string(e.kind.as_str());
        out.err_mess = c_string(&e.mess);
    }
    let (join, node, new, b, w, rt) = match &r.join {
        Join::None => (0, -1, false, "", "", ""),
        Join::Add { node, new, balancer, worker, route } => (1, *node as c_int, *new, balancer.as_str(), worker.as_str(), route.as_str()),
        Join::Disable { node, balancer, worker, route } => (2, *node as c_int, false, balancer.as_str(), worker.as_str(), route.as_str()),
    };
    out.join = join;
    out.node = node;
    out.join_new = new as c_int;
    out.balancer = c_string(b);
    out.worker = c_string(w);
    out.route = c_string(rt);
}

fn empty_reply() -> McmpReplyC {
    McmpReplyC {
        status: 500,
        body: std::ptr::null_mut(),
        body_len: 0,
        err_type: std::ptr::null_mut(),
        err_mess: std::ptr::null_mut(),
        join: 0,
        join_new: 0,
        node: -1,
        balancer: std::ptr::null_mut(),
        worker: std::ptr::null_mut(),
        route: std::ptr::null_mut(),
    }
}

/// One MCMP request: method, URI, body. Fills `out` (free with prx_mcmp_reply_free).
#[no_mangle]
pub extern "C" fn prx_mcmp(
    method: *const c_char,
    uri: *const c_char,
    body: *const c_char,
    len: usize,
    id: i64,
    out: *mut McmpReplyC,
) -> c_int {
    if out.is_null() {
        return -1;
    }
    // SAFETY: the shim passes a pointer to its own (uninitialised) local reply struct.
    let out = unsafe { &mut *out };
    *out = empty_reply();
    guard(-1, || {
        let body: &[u8] = if body.is_null() || len == 0 {
            &[]
        } else {
            // SAFETY: the shim passes the `len` bytes it read into a buffer that outlives the call.
            unsafe { std::slice::from_raw_parts(body as *const u8, len) }
        };
        let r = crate::mcmp::handle(str_arg(method).unwrap_or(""), str_arg(uri).unwrap_or(""), body, id);
        fill_reply(out, r);
        0
    })
}

/// Joining the balancer failed: undoes a new registration and makes `out` the error reply.
#[no_mangle]
pub extern "C" fn prx_mcmp_join_failed(node: c_int, is_new: c_int, why: *const c_char, out: *mut McmpReplyC) {
    if out.is_null() {
        return;
    }
    // SAFETY: the shim passes its reply struct, already emptied by prx_mcmp_reply_free.
    let out = unsafe { &mut *out };
    *out = empty_reply();
    guard((), || {
        let r = crate::mcmp::join_failed(node.max(0) as usize, is_new != 0, str_arg(why).unwrap_or("cannot add the node to its balancer"));
        fill_reply(out, r);
    })
}

/// Beside mod_manager: a body it read (see mcmp::observe).
#[no_mangle]
pub extern "C" fn prx_cluster_observe(method: *const c_char, uri: *const c_char, body: *const c_char, len: usize) {
    guard((), || {
        let body: &[u8] = if body.is_null() || len == 0 {
            &[]
        } else {
            // SAFETY: the shim passes `len` bytes it copied into a buffer that outlives the call.
            unsafe { std::slice::from_raw_parts(body as *const u8, len) }
        };
        crate::mcmp::observe(str_arg(method).unwrap_or(""), str_arg(uri).unwrap_or(""), body)
    })
}

/// Authenticated connections of node `node` (idle or in use) in all children.
#[no_mangle]
pub extern "C" fn prx_node_connections(node: c_int) -> c_int {
    guard(0, || if node < 0 { 0 } else { crate::mcmp::node_connections(node as usize).clamp(0, i32::MAX as i64) as c_int })
}

#[no_mangle]
pub extern "C" fn prx_mcmp_reply_free(out: *mut McmpReplyC) {
    if out.is_null() {
        return;
    }
    // SAFETY: the shim passes the struct prx_mcmp filled.
    let out = unsafe { &mut *out };
    guard((), || {
        for p in [&mut out.body, &mut out.err_type, &mut out.err_mess, &mut out.balancer, &mut out.worker, &mut out.route] {
            free_c_string(p);
        }
    })
}

/// Ownership of a socket passes to C (APR closes it when mod_proxy is done).
pub trait IntoRawFdForC {
    fn into_raw_fd_for_c(self) -> c_int;
}
impl IntoRawFdForC for std::net::TcpStream {
    fn into_raw_fd_for_c(self) -> c_int {
        use std::os::fd::IntoRawFd;
        self.into_raw_fd()
    }
}

// ---------------------------------------------------------------------------
// System calls the standard library does not offer
// ---------------------------------------------------------------------------

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
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; MAX];
        let ms = timeout.as_millis().min(i32::MAX as u128) as c_int;
        // SAFETY: the kernel writes at most MAX events into the array we own.
        let n = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), evs.as_mut_ptr(), MAX as c_int, ms) };
        out.clear();
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted { Ok(()) } else { Err(e) };
        }
        for ev in &evs[..n as usize] {
            let (token, events) = (ev.u64, ev.events);
            out.push((token, events));
        }
        Ok(())
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

// SAFETY: Slot is #[repr(C)] and made only of atomics (and arrays of structs of atomics).
unsafe impl ZeroShareable for crate::stats::Slot {}
// SAFETY: #[repr(C)], made only of atomics and arrays of atomics.
unsafe impl ZeroShareable for crate::registry::Slot {}
// SAFETY: #[repr(C)], two atomics.
unsafe impl ZeroShareable for crate::registry::Header {}

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
