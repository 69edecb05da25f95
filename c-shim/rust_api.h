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

/* A directive taking a list of arguments ("ProxyReversed", "ProxyReversedMCMP",
 * "ProxyReversedNodeSecret"), by name. Returns 0, or -1 with a message in err. */
int prx_cfg_args(const char *name, int argc, const char *const *argv, char *err, size_t errlen);

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

/* --- MCMP registrations across a restart (c-shim/retained.c) --- */

/* pconf cleanup in the parent: the active registrations as a NUL-terminated
 * text (free with prx_string_free), or NULL without ProxyReversedMCMP. */
char *prx_registry_snapshot(size_t *len);

/* check_config: the text the previous generation saved (NULL: none). Keeps
 * the registrations this configuration admits (the others are logged) and
 * returns how many are pending, for prx_restore_member. */
int prx_restore_begin(const char *text, size_t len);

/* Field of pending registration i: 0 balancer name (without balancer://),
 * 1 worker URL, 2 route. NULL if dropped. Valid until post_config. */
const char *prx_restore_member(int i, int field);

/* The balancer member of pending registration i could not be made: drop it. */
void prx_restore_drop(int i, const char *why);

/* Index of the reversed node that owns this worker name, or -1. Any thread. */
int prx_node_for_worker(const char *worker_name);

/* Changes whenever nodes are registered or removed through MCMP (0 without
 * ProxyReversedMCMP): the shim caches prx_node_for_worker per worker under it. */
unsigned int prx_nodes_gen(void);

/* 1 if nodes may register at run time (ProxyReversedMCMP), else 0. */
int prx_nodes_dynamic(void);

/* Nodes the module may serve: ProxyReversed nodes plus the slots for nodes
 * registered through MCMP. 0 means the module has nothing to do. */
int prx_node_count(void);

/* 1 if the worker URL points into a range where httpd itself listens for
 * reversed connections (ProxyReversed ranges, the ProxyReversedMCMP range)
 * although no node owns the worker: it must answer 503, never be dialled. */
int prx_worker_reserved(const char *worker_name);

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

/* A connection handed out by prx_take_fd (now fd) was closed by mod_proxy. */
void prx_fd_retired(int node, int fd);

/* mod_proxy kept the link fd in the worker's pool after a response. */
void prx_link_released(int fd);

/* 1 if a request may go on the pooled link fd of node `node` again (its last
 * response ended within the node's reuse= time); 0: close it and take a
 * verified idle link instead. */
int prx_link_reusable(int node, int fd);

/* --- MCMP receiver (SetHandler proxy-reversed-mcmp) --- */

/* The longest MCMP body the codec accepts (reversed_proto::mcmp::MAX_BODY). */
size_t prx_mcmp_max_body(void);

/* What to do in mod_proxy_balancer after a request (prx_mcmp_reply.join). */
#define PRX_JOIN_NONE 0
#define PRX_JOIN_ADD 1      /* make `worker` a member of balancer://`balancer`, enabled, route `route` */
#define PRX_JOIN_DISABLE 2  /* disable that member: the node was removed */

typedef struct {
    int status;          /* 200, or 500 with err_type and err_mess (MCMP error headers) */
    char *body;          /* reply body, body_len bytes, NUL-terminated */
    size_t body_len;
    char *err_type;      /* "SYNTAX", "MEM" or "GENERAL" (status 500 only) */
    char *err_mess;
    int join;            /* PRX_JOIN_* */
    int join_new;        /* the node was registered by this request */
    int node;
    char *balancer;      /* name without balancer:// */
    char *worker;
    char *route;
} prx_mcmp_reply;

/* Handles one MCMP request. id: the scoreboard's restart time (the id= of replies).
 * Always fills *out (free with prx_mcmp_reply_free). Returns 0, -1 on an internal error. */
int prx_mcmp(const char *method, const char *uri, const char *body, size_t len, long long id,
             prx_mcmp_reply *out);

/* The balancer member could not be made: undoes a new registration and
 * fills *out (freed before) with the MCMP error to send. */
void prx_mcmp_join_failed(int node, int is_new, const char *why, prx_mcmp_reply *out);

void prx_mcmp_reply_free(prx_mcmp_reply *out);

/* --- beside mod_cluster (mod_manager answers MCMP) --- */

/* A whole MCMP request body that mod_manager read: a CONFIG with Reversed
 * registers the node here too (no balancer join: mod_proxy_cluster makes the
 * worker); REMOVE-APP of the whole node removes it; APP commands update
 * contexts. Anything else is ignored. */
void prx_cluster_observe(const char *method, const char *uri, const char *body, size_t len);

/* Authenticated connections of a node, idle or in use, in all children. */
int prx_node_connections(int node);

/* mod_proxy_cluster keeps a node out of its balancer until a STATUS with a
 * Load is accepted. A STATUS of registered node `node` with `load` was
 * answered OK (live 1) or NOTOK for want of links (live 0): a refused Load
 * (0..100) is kept until the node's first link arrives; an accepted one, or
 * -1, forgets it. */
void prx_cluster_status(int node, int load, int live);
/* 1 if some registered node has a kept Load and live links now. */
int prx_cluster_lift_due(void);
/* The kept Load of `node` if it has live links now, else -1. */
int prx_cluster_lift_load(int node);
/* That Load was applied to the node's worker: forget it (and log it). */
void prx_cluster_lifted(int node, int load);

/* Status page: a NUL-terminated document (free with prx_string_free);
 * format 0 text, 1 JSON, 2 Prometheus text exposition (version 0.0.4),
 * 3 HTML (with a meta refresh every refresh_s seconds unless 0). */
char *prx_status_render(int format, int refresh_s, size_t *len);
/* mod_status (ExtendedStatus On): this module's section of /server-status,
 * summed per node over the children; short_form 1: the "?auto" lines
 * (ProxyReversedNode[i]Name: ...), 0: an HTML table. Free with prx_string_free. */
char *prx_status_fragment(int short_form, size_t *len);
void prx_string_free(char *s);

#endif
