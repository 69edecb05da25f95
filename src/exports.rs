//! The functions the C shim calls (c-shim/rust_api.h declares them): the top
//! layer of the crate. No Rust panic crosses into C: every exported function
//! runs its body under `catch_unwind` and answers a safe default if it panics.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::api;

fn guard<T>(default: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => {
            crate::log::error(900, "internal error (a panic was caught at the C boundary)");
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

/// The active MCMP registrations as text (free with prx_string_free), or NULL
/// without ProxyReversedMCMP.
#[no_mangle]
pub extern "C" fn prx_registry_snapshot(len: *mut usize) -> *mut c_char {
    guard(std::ptr::null_mut(), || {
        let Some(doc) = api::registry_snapshot() else { return std::ptr::null_mut() };
        let c = std::ffi::CString::new(doc).unwrap_or_default();
        if !len.is_null() {
            // SAFETY: the shim passes a pointer to a local size_t.
            unsafe { *len = c.as_bytes().len() };
        }
        c.into_raw()
    })
}

#[no_mangle]
pub extern "C" fn prx_restore_begin(text: *const c_char, len: usize) -> c_int {
    guard(0, || {
        let t = if text.is_null() {
            None
        } else {
            // SAFETY: the shim passes `len` readable bytes (its retained copy).
            let b = unsafe { std::slice::from_raw_parts(text as *const u8, len) };
            std::str::from_utf8(b).ok()
        };
        api::restore_begin(t).min(c_int::MAX as usize) as c_int
    })
}

#[no_mangle]
pub extern "C" fn prx_restore_member(i: c_int, field: c_int) -> *const c_char {
    guard(std::ptr::null(), || {
        if i < 0 || field < 0 {
            return std::ptr::null();
        }
        api::restore_member(i as usize, field as usize).unwrap_or(std::ptr::null())
    })
}

#[no_mangle]
pub extern "C" fn prx_restore_drop(i: c_int, why: *const c_char) {
    guard((), || {
        if i >= 0 {
            api::restore_drop(i as usize, str_arg(why).unwrap_or("the balancer member could not be made"))
        }
    })
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
pub extern "C" fn prx_mcmp_max_body() -> usize {
    reversed_proto::mcmp::MAX_BODY
}

#[no_mangle]
pub extern "C" fn prx_nodes_dynamic() -> c_int {
    guard(0, || api::nodes_dynamic() as c_int)
}

#[no_mangle]
pub extern "C" fn prx_nodes_gen() -> std::ffi::c_uint {
    guard(0, api::nodes_gen)
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
pub extern "C" fn prx_status_render(format: c_int, refresh_s: c_int, len: *mut usize) -> *mut c_char {
    guard(std::ptr::null_mut(), || {
        let doc = api::status_render(api::StatusFormat::from_code(format), refresh_s.clamp(0, 86_400) as u32);
        let c = std::ffi::CString::new(doc).unwrap_or_default();
        if !len.is_null() {
            // SAFETY: the shim passes a pointer to a local size_t.
            unsafe { *len = c.as_bytes().len() };
        }
        c.into_raw()
    })
}

#[no_mangle]
pub extern "C" fn prx_status_fragment(short_form: c_int, len: *mut usize) -> *mut c_char {
    guard(std::ptr::null_mut(), || {
        let c = std::ffi::CString::new(api::status_fragment(short_form != 0)).unwrap_or_default();
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
            // SAFETY: `s` came from CString::into_raw in prx_status_render or prx_status_fragment and is freed once.
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
    c_string_len(s).0
}

/// A C string of `s` without its NULs, and its length: the two agree by
/// construction (C writes exactly that many bytes).
fn c_string_len(s: &str) -> (*mut c_char, usize) {
    let c = std::ffi::CString::new(s.replace('\0', "")).unwrap_or_default();
    let n = c.as_bytes().len();
    (c.into_raw(), n)
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
    (out.body, out.body_len) = c_string_len(&r.body);
    if let Some(e) = &r.error {
        out.err_type = c_string(e.kind.as_str());
        out.err_mess = c_string(&e.mess);
    }
    let (join, node, new, b, w, rt) = match &r.join {
        Join::None => (0, -1, false, "", "", ""),
        Join::Add { node, new, balancer, worker, route } => {
            (1, *node as c_int, *new, balancer.as_str(), worker.as_str(), route.as_str())
        }
        Join::Disable { node, balancer, worker, route } => {
            (2, *node as c_int, false, balancer.as_str(), worker.as_str(), route.as_str())
        }
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
        let r = crate::mcmp::join_failed(
            node.max(0) as usize,
            is_new != 0,
            str_arg(why).unwrap_or("cannot add the node to its balancer"),
        );
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
    guard(
        0,
        || if node < 0 { 0 } else { crate::mcmp::node_connections(node as usize).clamp(0, i32::MAX as i64) as c_int },
    )
}

/// Beside mod_proxy_cluster: a STATUS of `node` with `load` was answered
/// OK (`live` 1) or NOTOK for want of links (0).
#[no_mangle]
pub extern "C" fn prx_cluster_status(node: c_int, load: c_int, live: c_int) {
    guard((), || {
        if node >= 0 {
            crate::mcmp::cluster_status(node as usize, load, live != 0)
        }
    })
}

/// 1 if some registered node waits for its first link with a pending Load and has one now.
#[no_mangle]
pub extern "C" fn prx_cluster_lift_due() -> c_int {
    guard(0, || crate::mcmp::cluster_lift_due() as c_int)
}

/// The pending Load of `node` if it has live links now, else -1.
#[no_mangle]
pub extern "C" fn prx_cluster_lift_load(node: c_int) -> c_int {
    guard(-1, || if node < 0 { -1 } else { crate::mcmp::cluster_lift_load(node as usize) })
}

/// The shim applied the pending Load `load` to the worker of `node`.
#[no_mangle]
pub extern "C" fn prx_cluster_lifted(node: c_int, load: c_int) {
    guard((), || {
        if node >= 0 {
            crate::mcmp::cluster_lifted(node as usize, load)
        }
    })
}

#[no_mangle]
pub extern "C" fn prx_mcmp_reply_free(out: *mut McmpReplyC) {
    if out.is_null() {
        return;
    }
    // SAFETY: the shim passes the struct prx_mcmp filled.
    let out = unsafe { &mut *out };
    guard((), || {
        for p in
            [&mut out.body, &mut out.err_type, &mut out.err_mess, &mut out.balancer, &mut out.worker, &mut out.route]
        {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The body length C is told is the length of the string it gets, also
    /// when the body had NULs (they are stripped).
    #[test]
    fn reply_length_matches_the_body_it_describes() {
        let mut out = empty_reply();
        let r = crate::mcmp::Reply { status: 200, body: "a\0b\0c".into(), error: None, join: crate::mcmp::Join::None };
        fill_reply(&mut out, r);
        // SAFETY: body came from CString::into_raw in fill_reply.
        let body = unsafe { CStr::from_ptr(out.body) }.to_bytes();
        assert_eq!(body, b"abc");
        assert_eq!(out.body_len, body.len());
        prx_mcmp_reply_free(&mut out);
    }
}
