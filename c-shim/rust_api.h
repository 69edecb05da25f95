/*
 * What the Rust core of mod_proxy_reversed exports to the C shim
 * (src/ffi.rs defines each of these; keep the two in step).
 * Every function catches Rust panics; none unwinds into C.
 */
#ifndef PRX_RUST_API_H
#define PRX_RUST_API_H

#include <stddef.h>

/* --- configuration, in the parent while httpd reads its configuration --- */

/* Forgets every node: called from pre_config before each configuration read. */
void prx_cfg_reset(void);

/* One "ProxyReversed" directive. Returns 0, or -1 with a message in err. */
int prx_cfg_node(int argc, const char *const *argv, char *err, size_t errlen);

/* A server-wide directive (name as written). Returns 0, or -1 with a message in err. */
int prx_cfg_global(const char *name, const char *value, char *err, size_t errlen);

/* From check_config: a worker of that name exists (ProxyPass/BalancerMember). */
void prx_cfg_saw_worker(const char *worker_name);

/* From check_config, after every worker was seen: 0, or -1 with a message in err
 * naming the first node whose worker does not exist. */
int prx_cfg_check(char *err, size_t errlen);

/* From post_config (parent): the configuration is final; sets up the shared
 * status table for up to server_limit processes, and warns (error log) when a
 * one-thread MPM may run more children (max_children) than a range has ports.
 * Returns 0, or -1 with a message in err. */
int prx_post_config(int server_limit, int max_children, int threads_per_child, char *err, size_t errlen);

/* pconf cleanup in the parent: releases the status table. */
void prx_pconf_cleanup(void);

/* Index of the reversed node that owns this worker name, or -1. Any thread. */
int prx_node_for_worker(const char *worker_name);

/* Number of configured nodes. */
int prx_node_count(void);

/* --- in each child --- */

/* child_init: binds each node's port and starts the accept thread. */
void prx_child_init(void);

/* child_stopping: closes the listeners at once so dialers move on. */
void prx_child_stopping(int graceful);

/* pchild pre-cleanup: stops and joins the accept thread, closes idle connections. */
void prx_child_exit(void);

/* Takes an authenticated idle connection of node `node`, waiting up to the
 * node's wait time (or not at all if nowait). Returns a connected, blocking fd
 * that the caller now owns, or -1 (none in time, or no listener in this
 * child). *wait_ms gets the node's wait time, for messages. */
int prx_take_fd(int node, int nowait, int *wait_ms);

/* A connection handed out by prx_take_fd was closed by mod_proxy. */
void prx_fd_retired(int node);

/* Status page: a NUL-terminated text or JSON document (free with prx_string_free). */
char *prx_status_render(int json, size_t *len);
void prx_string_free(char *s);

#endif
