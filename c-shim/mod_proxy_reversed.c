/*
 * mod_proxy_reversed: the C shim.
 *
 * This file owns everything that only C should touch: the module symbol, the
 * directive table, hook registration, and every field of httpd's and
 * mod_proxy's structs. The logic (configuration, listeners, handshake, pools,
 * status) lives in Rust behind the narrow API of rust_api.h.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "ap_mpm.h"
#include "mpm_common.h"
#include "mod_proxy.h"
#include "apr_strings.h"
#include "apr_portable.h"
#include "apr_optional.h"
#include "apr_thread_mutex.h"
#include "scoreboard.h"
#include "mod_status.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "shim.h"
#include "internal.h"

#if !AP_MODULE_MAGIC_AT_LEAST(20120211, 130)
#error "mod_proxy_reversed needs httpd 2.4.59 or later (ap_proxy_determine_address)"
#endif

/* The one symbol httpd looks up (LoadModule); everything else stays hidden. */
#define PRX_EXPORT __attribute__((visibility("default")))
PRX_EXPORT module AP_MODULE_DECLARE_DATA proxy_reversed_module;
APLOG_USE_MODULE(proxy_reversed);

#define PRX_FN "PROXY_REVERSED"
#define PRX_ERRLEN 512

/* Compile-time check that the levels the Rust side uses are httpd's. */
typedef char prx_levels_match[(PRX_LOG_ERR == APLOG_ERR && PRX_LOG_WARNING == APLOG_WARNING
                               && PRX_LOG_NOTICE == APLOG_NOTICE && PRX_LOG_INFO == APLOG_INFO
                               && PRX_LOG_DEBUG == APLOG_DEBUG) ? 1 : -1];

/* ------------------------------------------------------------------ */
/* Services offered to Rust (shim.h)                                   */
/* ------------------------------------------------------------------ */

void prx_log(int level, const char *file, int line, const char *msg)
{
    /* The Rust caller's own file and line, not this function's. */
    if (ap_server_conf) {
        ap_log_error_(file, line, APLOG_MODULE_INDEX, level, 0, ap_server_conf, "%s", msg);
    }
    else {
        ap_log_error_(file, line, APLOG_MODULE_INDEX, level | APLOG_STARTUP, 0, NULL,
                      "mod_proxy_reversed: %s", msg);
    }
}

int prx_log_enabled(int level)
{
    if (!ap_server_conf) {
        return level <= APLOG_NOTICE;
    }
    return APLOG_MODULE_IS_LEVEL(ap_server_conf, APLOG_MODULE_INDEX, level);
}

/* Per-process table of every worker this child has seen: which node carries
 * it (or none), resolved by name once per generation of the registered nodes
 * (prx_nodes_gen), so that a request pays a pointer walk, not a name lookup.
 * The worker's general-purpose context pointer belongs to mod_proxy_cluster
 * and is never used here. */
#define PRX_NOT_REVERSED (-1)
#define PRX_RESERVED (-2)
typedef struct prx_worker_ref {
    proxy_worker *worker;
    int node;           /* >= 0, PRX_NOT_REVERSED or PRX_RESERVED; atomic */
    int adopted;        /* the reversed settings were applied */
    unsigned int gen;   /* prx_nodes_gen() when `node` was resolved; atomic, published last */
    struct prx_worker_ref *next;
} prx_worker_ref;
/* Readers walk the list without a lock: entries are only ever prepended,
 * each fully built before the head is published (release; readers acquire),
 * and a resolved entry stores its node before its gen. */
static prx_worker_ref *prx_workers;
/* Serialises writers (request threads resolving a worker, the MCMP handler). */
static apr_thread_mutex_t *prx_workers_mutex;
/* This child serves reversed nodes (child_init found some): else the scheme
 * hook declines at once. */
static int prx_active;
/* Nodes may be registered at run time (ProxyReversedMCMP): the cache of
 * prx_worker_node is then keyed on prx_nodes_gen(); else it never changes. */
static int prx_dynamic;
/* Set on the thread that runs the inner scheme handlers of a handoff, so the
 * hook declines there (cheaper per request than a table lookup in r->notes). */
static __thread int prx_inner;

static prx_worker_ref *prx_refs(void)
{
    return __atomic_load_n(&prx_workers, __ATOMIC_ACQUIRE);
}

static prx_worker_ref *prx_ref_find(proxy_worker *w)
{
    prx_worker_ref *ref;
    for (ref = prx_refs(); ref; ref = ref->next) {
        if (ref->worker == w) {
            return ref;
        }
    }
    return NULL;
}
static apr_pool_t *prx_child_pool;
static APR_OPTIONAL_FN_TYPE(balancer_manage) *prx_balancer_manage;

void prx_node_ready(int node)
{
    prx_worker_ref *w;
    for (w = prx_refs(); w; w = w->next) {
        if (__atomic_load_n(&w->node, __ATOMIC_RELAXED) == node && w->worker->s
            && (w->worker->s->status & PROXY_WORKER_IN_ERROR)) {
            /* A connection is here: the member is usable again at once,
             * instead of after its retry period. */
            w->worker->s->status &= ~PROXY_WORKER_IN_ERROR;
            ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, ap_server_conf,
                         "PRX1001: cleared the error state of worker %s: a reversed connection arrived",
                         w->worker->s->name_ex);
        }
    }
}

/* ------------------------------------------------------------------ */
/* Directives                                                          */
/* ------------------------------------------------------------------ */

static const char *prx_cmd_args(cmd_parms *cmd, void *dummy, int argc, char *const argv[])
{
    char err[PRX_ERRLEN];
    const char *ctx = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    if (ctx) {
        return ctx;
    }
    if (prx_cfg_args(cmd->cmd->name, argc, (const char *const *)argv, err, sizeof(err)) != 0) {
        return apr_pstrcat(cmd->pool, cmd->cmd->name, ": ", err, NULL);
    }
    return NULL;
}

static const char *prx_cmd_global(cmd_parms *cmd, void *dummy, const char *value)
{
    char err[PRX_ERRLEN];
    const char *ctx = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    if (ctx) {
        return ctx;
    }
    if (prx_cfg_global(cmd->cmd->name, value, err, sizeof(err)) != 0) {
        return apr_pstrcat(cmd->pool, cmd->cmd->name, ": ", err, NULL);
    }
    return NULL;
}

static const command_rec prx_cmds[] = {
    AP_INIT_TAKE_ARGV("ProxyReversedMCMP", prx_cmd_args, NULL, RSRC_CONF,
                      "ProxyReversedMCMP <listen-address>:<first>-<last> [ports=<n>] "
                      "[balancer=<name>] [secret=<file>] [allow=<net>[,<net>...]] "
                      "[wait=<time>] [maxidle=<n>] [nodes=<n>]: nodes may register "
                      "through MCMP and listen inside this range"),
    AP_INIT_TAKE_ARGV("ProxyReversedNodeSecret", prx_cmd_args, NULL, RSRC_CONF,
                      "ProxyReversedNodeSecret <JVMRoute> <file>: the secret of one "
                      "node registered through MCMP"),
    AP_INIT_TAKE_ARGV("ProxyReversed", prx_cmd_args, NULL, RSRC_CONF,
                      "ProxyReversed <node> <worker-url> <listen-address>:<first>-<last> "
                      "[secret=<file>] [auth=hmac|none] [allow=<net>[,<net>...]] "
                      "[wait=<time>] [maxidle=<n>] [liveness keys, see ProxyReversedLiveness]"),
    AP_INIT_TAKE_ARGV("ProxyReversedLiveness", prx_cmd_args, NULL, RSRC_CONF,
                      "ProxyReversedLiveness [ping=<time>|off] [pingtimeout=<time>] "
                      "[verify=<time>|off] [reuse=<time>] [keepalive=<idle>,<intvl>,<count>|off] "
                      "[usertimeout=<time>|off] [v1=refuse|serve]: defaults of every node"),
    AP_INIT_TAKE1("ProxyReversedHandshakeTimeout", prx_cmd_global, NULL, RSRC_CONF,
                  "How long a dialer may take to complete the handshake (default 3s)"),
    AP_INIT_TAKE1("ProxyReversedMaxHandshakes", prx_cmd_global, NULL, RSRC_CONF,
                  "Connections in handshake at once, per child (default 64)"),
    {NULL}
};

/* ------------------------------------------------------------------ */
/* Configuration hooks                                                 */
/* ------------------------------------------------------------------ */

static int prx_pre_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp)
{
    prx_cfg_reset();
    return OK;
}

void prx_each_worker(server_rec *main_s, int which, prx_worker_fn fn, void *baton)
{
    server_rec *s;
    for (s = main_s; s; s = s->next) {
        proxy_server_conf *conf = ap_get_module_config(s->module_config, &proxy_module);
        int i, j;
        if (!conf) {
            continue;
        }
        if ((which & PRX_EACH_PROXYPASS) && conf->workers) {
            proxy_worker *w = (proxy_worker *)conf->workers->elts;
            for (i = 0; i < conf->workers->nelts; i++) {
                if (fn(&w[i], conf, s, baton)) {
                    return;
                }
            }
        }
        if ((which & PRX_EACH_MEMBERS) && conf->balancers) {
            proxy_balancer *b = (proxy_balancer *)conf->balancers->elts;
            for (i = 0; i < conf->balancers->nelts; i++) {
                proxy_worker **bw;
                if (!b[i].workers) {
                    continue;
                }
                bw = (proxy_worker **)b[i].workers->elts;
                for (j = 0; j < b[i].workers->nelts; j++) {
                    if (bw[j] && fn(bw[j], conf, s, baton)) {
                        return;
                    }
                }
            }
        }
    }
}

/* An https:// worker: mod_proxy_http runs mod_ssl's TLS client over its connections. */
static int prx_tls_worker(proxy_worker *w)
{
    return strcasecmp(w->s->scheme, "https") == 0;
}

static int prx_check_one(proxy_worker *w, proxy_server_conf *conf, server_rec *s, void *baton)
{
    if (!w->s) {
        return 0;
    }
    prx_cfg_saw_worker(prx_worker_name(w));
    if (prx_node_for_worker(prx_worker_name(w)) >= 0) {
        /* Pooled connections must survive their release. */
        w->s->is_address_reusable = 1;
        w->s->disablereuse = 0;
        if (w->s->method != NONE) {
            /* mod_proxy_hcheck dials the worker's own address: the sentinel. */
            ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_EMERG, 0, NULL,
                         "PRX1015: ProxyReversed: worker %s has a mod_proxy_hcheck health check "
                         "(hcmethod=%s): it would dial the worker's sentinel address, fail, and mark "
                         "the reversed node down. Remove hcmethod= (and the other hc* keys) from it: "
                         "reversed links are checked by the module itself (PINGs on idle links and a "
                         "check before use, see ProxyReversedLiveness)",
                         prx_worker_name(w), ap_proxy_show_hcmethod(w->s->method));
            *(int *)baton = 1;
        }
        if (prx_tls_worker(w) && !ap_find_linked_module("mod_ssl.c")) {
            ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_EMERG, 0, NULL,
                         "PRX1030: ProxyReversed: the reversed worker %s is https://: mod_proxy_http runs TLS "
                         "over its reversed connections through mod_ssl, which is not loaded "
                         "(LoadModule ssl_module, and SSLProxyEngine on where the worker is used)",
                         prx_worker_name(w));
            *(int *)baton = 1;
        }
    }
    return 0;
}

static int prx_check_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp, server_rec *s)
{
    char err[PRX_ERRLEN];
    int bad = 0;
    if (prx_node_count() > 0) {
        prx_each_worker(s, PRX_EACH_ALL, prx_check_one, &bad);
    }
    if (bad) {
        return !OK;
    }
    if (prx_cfg_check(err, sizeof(err)) != 0) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_EMERG, 0, NULL,
                     "PRX1002: ProxyReversed: %s", err);
        return !OK;
    }
    prx_retained_restore(pconf, ptemp, s);
    return OK;
}

static apr_status_t prx_pconf_cleanup_c(void *unused)
{
    prx_retained_save();
    prx_pconf_cleanup();
    return APR_SUCCESS;
}

static int prx_hook_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp, server_rec *s)
{
    char err[PRX_ERRLEN];
    int limit = 0, daemons = 0, threads = 0;
    if (prx_node_count() == 0) {
        return OK;
    }
    ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &limit);
    ap_mpm_query(AP_MPMQ_MAX_DAEMONS, &daemons);
    ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads);
    if (prx_post_config(limit, daemons, threads, err, sizeof(err)) != 0) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "PRX1003: ProxyReversed: %s", err);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    apr_pool_cleanup_register(pconf, NULL, prx_pconf_cleanup_c, apr_pool_cleanup_null);
    return OK;
}

/* ------------------------------------------------------------------ */
/* Child lifecycle                                                     */
/* ------------------------------------------------------------------ */

static int prx_worker_node(proxy_worker *w);

static int prx_collect_one(proxy_worker *w, proxy_server_conf *conf, server_rec *s, void *baton)
{
    if (w->s) {
        prx_worker_node(w);
    }
    return 0;
}

static apr_status_t prx_child_exit_c(void *unused)
{
    prx_child_exit();
    __atomic_store_n(&prx_workers, NULL, __ATOMIC_RELEASE);
    return APR_SUCCESS;
}

static void prx_hook_child_init(apr_pool_t *pchild, server_rec *s)
{
    if (prx_node_count() == 0) {
        return;
    }
    __atomic_store_n(&prx_workers, NULL, __ATOMIC_RELEASE);
    prx_child_pool = pchild;
    apr_thread_mutex_create(&prx_workers_mutex, APR_THREAD_MUTEX_DEFAULT, pchild);
    prx_active = 1;
    prx_dynamic = prx_nodes_dynamic();
    prx_balancer_manage = APR_RETRIEVE_OPTIONAL_FN(balancer_manage);
    prx_each_worker(s, PRX_EACH_ALL, prx_collect_one, NULL);
    prx_child_init();
    /* A pre-cleanup runs before pchild's subpools (mod_proxy's connection
     * pools) are destroyed: the accept thread is joined first. */
    apr_pool_pre_cleanup_register(pchild, NULL, prx_child_exit_c);
}

#if AP_MODULE_MAGIC_AT_LEAST(20120211, 110)
static void prx_hook_child_stopping(apr_pool_t *pchild, int graceful)
{
    if (prx_node_count() > 0) {
        prx_child_stopping(graceful);
    }
}
#endif

/* Records that worker w is carried by `node` (or not), with the
 * generation it was resolved under. A reversed worker gets the settings the
 * handoff needs, once: pooled connections must survive their release, and
 * the resolved address is borrowed per request, never resolved again. */
static void prx_ref_set(proxy_worker *w, int node, unsigned int gen)
{
    prx_worker_ref *ref;
    if (!prx_workers_mutex || apr_thread_mutex_lock(prx_workers_mutex) != APR_SUCCESS) {
        return;
    }
    ref = prx_ref_find(w);
    if (!ref) {
        ref = apr_pcalloc(prx_child_pool, sizeof(*ref));
        ref->worker = w;
        ref->node = node;
        ref->gen = gen;
        ref->next = prx_workers;
        __atomic_store_n(&prx_workers, ref, __ATOMIC_RELEASE);
    }
    __atomic_store_n(&ref->node, node, __ATOMIC_RELAXED);
    if (node >= 0 && !ref->adopted) {
        w->s->is_address_reusable = 1;
        w->s->disablereuse = 0;
        w->s->address_ttl = -1;
        ref->adopted = 1;
    }
    __atomic_store_n(&ref->gen, gen, __ATOMIC_RELEASE);
    apr_thread_mutex_unlock(prx_workers_mutex);
}

/* The node that carries worker w: >= 0, PRX_NOT_REVERSED, or PRX_RESERVED
 * (it points into httpd's own reversed ranges: answer 503, never dial).
 * Resolved by name only when the registered nodes changed since. */
static int prx_worker_node(proxy_worker *w)
{
    unsigned int gen = prx_dynamic ? prx_nodes_gen() : 0;
    prx_worker_ref *ref = prx_ref_find(w);
    int node;
    if (ref && __atomic_load_n(&ref->gen, __ATOMIC_ACQUIRE) == gen) {
        return __atomic_load_n(&ref->node, __ATOMIC_RELAXED);
    }
    node = prx_node_for_worker(prx_worker_name(w));
    if (node < 0) {
        node = prx_worker_reserved(prx_worker_name(w)) ? PRX_RESERVED : PRX_NOT_REVERSED;
    }
    prx_ref_set(w, node, gen);
    return node;
}

/* A worker of a node registered through MCMP (the balancer member made for it). */
static void prx_adopt_worker(proxy_worker *w, int node)
{
    prx_ref_set(w, node, prx_dynamic ? prx_nodes_gen() : 0);
}

/* ------------------------------------------------------------------ */
/* The handoff                                                         */
/* ------------------------------------------------------------------ */

/* The cleanup's data: node in the high half, fd in the low one. */
#define PRX_RETIRE_DATA(node, fd) ((void *)(((apr_uintptr_t)(node) << 32) | (apr_uint32_t)(fd)))

static apr_status_t prx_conn_retired(void *data)
{
    apr_uintptr_t v = (apr_uintptr_t)data;
    prx_fd_retired((int)(v >> 32), (int)(apr_uint32_t)(v & 0xffffffffu));
    return APR_SUCCESS;
}

/* The fd under conn->sock, or -1. */
static int prx_conn_fd(proxy_conn_rec *conn)
{
    apr_os_sock_t fd;
    if (!conn->sock || apr_os_sock_get(&fd, conn->sock) != APR_SUCCESS) {
        return -1;
    }
    return (int)fd;
}

/* Closes the socket of a pooled connection as mod_proxy's own socket_cleanup
 * does (the scpool holds the socket, its backend conn_rec and our cleanup). */
static void prx_conn_drop_socket(proxy_conn_rec *conn)
{
    conn->sock = NULL;
    conn->tmp_bb = NULL;
    conn->connection = NULL;
    conn->ssl_hostname = NULL;
    apr_pool_clear(conn->scpool);
}

/* Wraps a backend-initiated fd into conn->sock, as ap_proxy_connect_backend
 * would have left a freshly dialled socket. The caller holds the connection. */
apr_status_t prx_attach(proxy_conn_rec *conn, proxy_worker *worker, proxy_server_conf *conf,
                        server_rec *s, int node, int fd)
{
    apr_os_sock_info_t info;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    apr_status_t rv;
    apr_interval_time_t timeout;

    memset(&info, 0, sizeof(info));
    info.os_sock = &fd;
    info.family = (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) ? ss.ss_family : AF_INET;
    info.type = SOCK_STREAM;
    info.protocol = IPPROTO_TCP;
    /* local/remote NULL: APR looks them up lazily if anyone asks. apr_os_sock_make
     * registers the close on conn->scpool, so socket_cleanup() closes the fd. */
    rv = apr_os_sock_make(&conn->sock, &info, conn->scpool);
    if (rv != APR_SUCCESS) {
        close(fd);
        conn->sock = NULL;
        prx_fd_retired(node, -1);
        return rv;
    }
    /* Counts the connection as retired when mod_proxy closes it. */
    apr_pool_cleanup_register(conn->scpool, PRX_RETIRE_DATA(node, fd), prx_conn_retired,
                              apr_pool_cleanup_null);

    if (worker->s->timeout_set) {
        timeout = worker->s->timeout;
    }
    else if (conf->timeout_set) {
        timeout = conf->timeout;
    }
    else {
        timeout = s->timeout;
    }
    apr_socket_timeout_set(conn->sock, timeout);
    apr_socket_opt_set(conn->sock, APR_TCP_NODELAY, 1);
    if (worker->s->keepalive) {
        apr_socket_opt_set(conn->sock, APR_SO_KEEPALIVE, 1);
    }
    if (worker->s->recv_buffer_size_set && worker->s->recv_buffer_size > 0) {
        apr_socket_opt_set(conn->sock, APR_SO_RCVBUF, (apr_int32_t)worker->s->recv_buffer_size);
    }
    else if (conf->recv_buffer_size_set && conf->recv_buffer_size > 0) {
        apr_socket_opt_set(conn->sock, APR_SO_RCVBUF, (apr_int32_t)conf->recv_buffer_size);
    }
    return APR_SUCCESS;
}

/*
 * The handoff design: "shadow worker" (design b' of the notes).
 *
 * Of the three designs, this is the one that is race-free under the event MPM
 * and still reuses the unmodified mod_proxy_ajp / mod_proxy_http:
 *  - seed-and-decline releases the seeded connection before mod_proxy_ajp
 *    acquires one, so another thread can take it and the request then dials
 *    the sentinel;
 *  - our own scheme handler would mean reimplementing the AJP and HTTP clients.
 * Here we acquire a connection of the real worker, give it a socket if it has
 * no live one, and run the scheme handlers on a per-request copy of the worker
 * whose pool holds exactly that connection (no reslist), so the inner
 * acquire can only get our connection. Afterwards the connection, with its
 * socket if mod_proxy kept it (AJP reuse / HTTP keep-alive), goes back to the
 * real worker's pool, and the next request reuses it without any handoff.
 * When no connection arrives within the node's wait time we answer 503
 * ourselves: mod_proxy never dials the sentinel for want of a connection.
 */
/* Gives conn a fresh backend-initiated socket; waits up to the node's wait
 * time unless nowait. Returns OK or HTTP_SERVICE_UNAVAILABLE. */
static int prx_give_socket(request_rec *r, proxy_worker *worker, proxy_server_conf *conf,
                           proxy_conn_rec *conn, int node, int nowait)
{
    int wait_ms = 0;
    int fd = prx_take_fd(node, nowait, &wait_ms);
    if (fd < 0) {
        if (!nowait) {
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                          "PRX1004: no reversed connection for worker %s arrived within %d ms",
                          prx_worker_name(worker), wait_ms);
        }
        return HTTP_SERVICE_UNAVAILABLE;
    }
    if (prx_attach(conn, worker, conf, r->server, node, fd) != APR_SUCCESS) {
        return HTTP_SERVICE_UNAVAILABLE;
    }
    /* With a live connection in hand, a stale "in error" state would only
     * make mod_proxy's own check close it again. */
    if (worker->s->status & PROXY_WORKER_IN_ERROR) {
        worker->s->status &= ~PROXY_WORKER_IN_ERROR;
    }
    return OK;
}

/* Whether a failed attempt can run again on another connection: the method
 * is idempotent (a 503 can also follow a request that reached the backend and
 * then stalled: it must not run twice), nothing went to the client, and no
 * request body was lost (mod_proxy_http keeps what it prefetched for a later
 * call; mod_proxy_ajp does not). HEAD has M_GET as its method number. */
static int prx_can_retry(request_rec *r, proxy_worker *worker)
{
    switch (r->method_number) {
    case M_GET:
    case M_PUT:
    case M_DELETE:
    case M_OPTIONS:
    case M_TRACE:
        /* As mod_proxy_ajp's is_idempotent(): with arguments the request
         * may have side effects (METHOD_IDEMPOTENT_WITH_ARGS), no retry. */
        if (r->args) {
            return 0;
        }
        break;
    default:
        return 0;
    }
    if (r->bytes_sent || r->sent_bodyct) {
        return 0;
    }
    return r->read_length == 0 || strncasecmp(worker->s->scheme, "http", 4) == 0;
}

#define PRX_MAX_ATTEMPTS 3

/* Acquires a connection of the real worker with a resolved address the
 * per-request copy can borrow (nothing is resolved again per request).
 * OK, or the HTTP status to answer. */
static int prx_acquire(request_rec *r, proxy_worker *worker, proxy_conn_rec **conn)
{
    int status = ap_proxy_acquire_connection(PRX_FN, conn, worker, r->server);
    if (status != OK) {
        return status;
    }
    if (!(*conn)->address && worker->s->hostname_ex[0]) {
        if (ap_proxy_determine_address(PRX_FN, *conn, worker->s->hostname_ex, worker->s->port,
                                       0, r, NULL) != APR_SUCCESS) {
            ap_proxy_release_connection(PRX_FN, *conn, r->server);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
    }
    return OK;
}

/* TLS over a reversed link (https:// workers). mod_proxy's
 * ap_proxy_determine_connection() decides the name mod_ssl sends as SNI and
 * checks the backend's certificate against (the "proxy-request-hostname"
 * note): r->hostname with ProxyPreserveHost, else the host of the worker URL.
 * It keeps that name in conn->ssl_hostname and closes a connection that has a
 * socket but no name yet, or another name: a fresh backend-initiated socket
 * would be closed there and the sentinel dialled. So a fresh socket gets the
 * same name here, and a kept TLS link whose name differs from this request's
 * is closed here (as mod_proxy would) so that a fresh link takes its place. */
static const char *prx_tls_name(request_rec *r, proxy_worker *worker, proxy_conn_rec *c)
{
    proxy_dir_conf *dconf = ap_get_module_config(r->per_dir_config, &proxy_module);
    if (dconf && dconf->preserve_host) {
        return r->hostname;
    }
    return c->hostname ? c->hostname : worker->s->hostname_ex;
}

static void prx_tls_drop_other_name(request_rec *r, proxy_worker *worker, proxy_conn_rec *c)
{
    const char *want;
    if (!c->sock || !c->ssl_hostname) {
        return;
    }
    want = prx_tls_name(r, worker, c);
    if (!want || strcasecmp(want, c->ssl_hostname) != 0) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                      "PRX1031: closing a reversed TLS link of worker %s made for the name %s: "
                      "this request needs %s", prx_worker_name(worker), c->ssl_hostname,
                      want ? want : "no name");
        prx_conn_drop_socket(c);
    }
}

static void prx_tls_name_fresh(request_rec *r, proxy_worker *worker, proxy_conn_rec *c)
{
    const char *want;
    if (!c->sock || c->connection) {
        return; /* TLS runs already on this link */
    }
    want = prx_tls_name(r, worker, c);
    c->ssl_hostname = want ? apr_pstrdup(c->scpool, want) : NULL;
}

/* After a failed attempt on an https:// worker: mod_proxy answered 500
 * "Error during SSL Handshake with remote server" (mod_ssl's reason is in
 * its AH02003/AH02004/AH02411 lines at LogLevel info). Say which reversed
 * worker it was, and that the link is gone. */
static void prx_tls_log_failure(request_rec *r, proxy_worker *worker, int status)
{
    const char *notes;
    if (status != HTTP_INTERNAL_SERVER_ERROR) {
        return;
    }
    notes = apr_table_get(r->notes, "error-notes");
    if (notes && strstr(notes, "SSL Handshake")) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "PRX1032: TLS handshake with the backend over a reversed connection of worker %s "
                      "failed (certificate not trusted, expired or for another name, or the backend "
                      "refused httpd's certificate; mod_ssl's reason: LogLevel ssl:info); "
                      "nothing was sent, the connection is closed", prx_worker_name(worker));
    }
}

/* One attempt: gives conn a usable socket and runs the unmodified scheme
 * handlers on a per-request copy of the worker whose pool holds exactly this
 * connection. Returns the handler's status; *conn is NULL if the inner
 * handler kept no connection, and *no_socket is set when no socket came. */
static int prx_attempt(request_rec *r, proxy_worker *worker, proxy_server_conf *conf, char *url,
                       const char *proxyhost, apr_port_t proxyport, int node, int retry,
                       proxy_conn_rec **conn, int *no_socket)
{
    proxy_worker shadow;
    proxy_conn_pool shadow_cp;
    proxy_conn_rec *c = *conn;
    int status;
    int tls = prx_tls_worker(worker);

    *no_socket = 0;
    if (tls) {
        prx_tls_drop_other_name(r, worker, c);
    }
    /* A pooled connection that still has its live socket is reused if its
     * last response ended within the node's reuse= time (such a link cannot
     * be pinged: it belongs to the request protocol); an older one is
     * closed, and a dead or unused one gets a fresh, verified
     * backend-initiated socket. A failed check has closed the socket
     * (socket_cleanup): conn->sock is NULL. */
    if (c->sock && !prx_link_reusable(node, prx_conn_fd(c))) {
        prx_conn_drop_socket(c);
    }
    if (!c->sock
        || ap_proxy_check_connection(PRX_FN, c, r->server, 0, PROXY_CHECK_CONN_EMPTY) != APR_SUCCESS) {
        status = prx_give_socket(r, worker, conf, c, node, retry);
        if (status != OK) {
            *no_socket = 1;
            return HTTP_SERVICE_UNAVAILABLE;
        }
    }
    if (tls) {
        prx_tls_name_fresh(r, worker, c);
    }

    shadow = *worker;
    shadow_cp = *worker->cp;
    shadow_cp.res = NULL;
    shadow_cp.conn = c;
    shadow.cp = &shadow_cp;

    prx_inner = 1;
    status = proxy_run_scheme_handler(r, &shadow, conf, url, proxyhost, proxyport);
    prx_inner = 0;

    /* The inner handler released the connection into shadow_cp.conn. */
    c = *conn = shadow_cp.conn;
    if (c) {
        c->worker = worker;
        if (c->sock) {
            /* mod_proxy keeps it for the next request (AJP reuse, HTTP keep-alive). */
            prx_link_released(prx_conn_fd(c));
        }
    }
    if (tls && status != OK) {
        prx_tls_log_failure(r, worker, status);
    }
    return status;
}

static int prx_scheme_handler(request_rec *r, proxy_worker *worker, proxy_server_conf *conf,
                              char *url, const char *proxyhost, apr_port_t proxyport)
{
    proxy_conn_rec *conn = NULL;
    int node, status, attempt, no_socket;

    if (!prx_active || prx_inner || proxyhost || !worker->s) {
        return DECLINED;
    }
    node = prx_worker_node(worker);
    if (node < 0) {
        if (node == PRX_RESERVED) {
            /* httpd's own reversed ports: dialling them would reach our listener. */
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                          "PRX1005: worker %s points into a range where httpd listens for reversed "
                          "connections, but no reversed node owns it: 503",
                          prx_worker_name(worker));
            return HTTP_SERVICE_UNAVAILABLE;
        }
        return DECLINED;
    }
    if (!worker->cp) {
        return HTTP_SERVICE_UNAVAILABLE;
    }
    status = prx_acquire(r, worker, &conn);
    if (status != OK) {
        return status;
    }
    for (attempt = 1;; attempt++) {
        status = prx_attempt(r, worker, conf, url, proxyhost, proxyport, node, attempt > 1, &conn,
                             &no_socket);
        if (no_socket) {
            ap_proxy_release_connection(PRX_FN, conn, r->server);
            if (attempt == 1) {
                apr_table_setn(r->notes, "error-notes", "No backend connection is available.");
            }
            return HTTP_SERVICE_UNAVAILABLE;
        }
        if (!conn) {
            return status;
        }
        /* 503 from the scheme handler means the connection failed before a
         * response (it died between our check and mod_proxy's, or while the
         * request was being written). While another connection is idle right
         * now, the request takes it instead of failing. */
        if (status != HTTP_SERVICE_UNAVAILABLE || attempt >= PRX_MAX_ATTEMPTS
            || !prx_can_retry(r, worker)) {
            break;
        }
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      "PRX1006: reversed connection of worker %s failed before a response; "
                      "retrying on another idle connection (attempt %d)",
                      prx_worker_name(worker), attempt + 1);
    }
    ap_proxy_release_connection(PRX_FN, conn, r->server);
    return status;
}

/* ------------------------------------------------------------------ */
/* Status handler                                                      */
/* ------------------------------------------------------------------ */

static int prx_status_handler(request_rec *r)
{
    size_t len = 0;
    char *doc;
    int format = 0; /* text */
    int refresh = 10;
    const char *accept, *q;
    static const char *const types[] = {"text/plain; charset=utf-8", "application/json",
                                        "text/plain; version=0.0.4; charset=utf-8",
                                        "text/html; charset=utf-8"};
    if (!r->handler || strcmp(r->handler, "proxy-reversed-status") != 0) {
        return DECLINED;
    }
    if (r->method_number != M_GET) {
        return HTTP_METHOD_NOT_ALLOWED;
    }
    if (r->args && (strcmp(r->args, "json") == 0 || strstr(r->args, "format=json") != NULL)) {
        format = 1;
    }
    else if (r->args && (strcmp(r->args, "metrics") == 0 || strstr(r->args, "format=metrics") != NULL)) {
        format = 2;
    }
    else if (r->args && (strncmp(r->args, "html", 4) == 0 || strstr(r->args, "format=html") != NULL)) {
        format = 3;
    }
    else if (!r->args && (accept = apr_table_get(r->headers_in, "Accept")) != NULL
             && strstr(accept, "text/html") != NULL) {
        /* A browser asking for the bare URL gets the HTML page. */
        format = 3;
    }
    if (!r->args) {
        apr_table_mergen(r->headers_out, "Vary", "Accept");
    }
    if (format == 3) {
        if (r->args && (q = strstr(r->args, "refresh=")) != NULL) {
            refresh = atoi(q + 8);
        }
    }
    ap_set_content_type(r, types[format]);
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    if (r->header_only) {
        return OK;
    }
    doc = prx_status_render(format, refresh, &len);
    if (doc) {
        ap_rwrite(doc, (int)len, r);
        prx_string_free(doc);
    }
    return OK;
}

/* mod_status's hook: with ExtendedStatus On, a section per node on
 * /server-status (an HTML table, or "?auto" lines in mod_proxy's indexed
 * style). The text comes from Rust. */
static int prx_mod_status_hook(request_rec *r, int flags)
{
    size_t len = 0;
    char *doc;
    if (!(flags & AP_STATUS_EXTENDED)) {
        return OK;
    }
    doc = prx_status_fragment((flags & AP_STATUS_SHORT) ? 1 : 0, &len);
    if (doc) {
        ap_rwrite(doc, (int)len, r);
        prx_string_free(doc);
    }
    return OK;
}

/* ------------------------------------------------------------------ */
/* MCMP receiver                                                       */
/* ------------------------------------------------------------------ */


/* Makes the node's worker an enabled member of its balancer (creating it
 * through mod_proxy_balancer's balancer_manage, which needs BalancerGrowth),
 * or disables it. Returns NULL or why it failed. */
static const char *prx_mcmp_join(request_rec *r, const prx_mcmp_reply *rep)
{
    proxy_server_conf *conf = ap_get_module_config(r->server->module_config, &proxy_module);
    proxy_balancer *b;
    proxy_worker *w;
    apr_table_t *params;
    const char *bname = apr_pstrcat(r->pool, BALANCER_PREFIX, rep->balancer, NULL);

    if (!conf) {
        return "mod_proxy is not configured for this server";
    }
    b = ap_proxy_get_balancer(r->pool, conf, bname, 0);
    if (!b) {
        return apr_psprintf(r->pool, "%s does not exist in the server that received the CONFIG "
                            "(declare <Proxy %s> with ProxySet growth=<n> in the same virtual host as "
                            "the proxy-reversed-mcmp handler)", bname, bname);
    }
    /* Members another child added (balancer_manage there) reach this child's
     * list only when it syncs: without this, a REMOVE-APP served here would
     * miss the member of a CONFIG served elsewhere (and a repeated CONFIG
     * would add a second member of the same name). */
    if (PROXY_THREAD_LOCK(b) == APR_SUCCESS) {
        ap_proxy_sync_balancer(b, r->server, conf);
        PROXY_THREAD_UNLOCK(b);
    }
    w = ap_proxy_get_worker(r->pool, b, conf, rep->worker);
    if (rep->join == PRX_JOIN_DISABLE) {
        if (w) {
            ap_proxy_set_wstatus(PROXY_WORKER_DISABLED_FLAG, 1, w);
        }
        return NULL;
    }
    if (!prx_balancer_manage) {
        return "mod_proxy_balancer is not loaded: registered nodes join balancers through it";
    }
    if (!w) {
        params = apr_table_make(r->pool, 4);
        apr_table_setn(params, "b", rep->balancer);
        apr_table_setn(params, "b_wyes", "1");
        apr_table_setn(params, "b_nwrkr", rep->worker);
        prx_balancer_manage(r, params);
        w = ap_proxy_get_worker(r->pool, b, conf, rep->worker);
        if (!w) {
            return apr_psprintf(r->pool, "cannot add %s to %s: no free member slot (raise "
                                "growth= of <Proxy %s> or BalancerGrowth)", rep->worker, bname, bname);
        }
    }
    /* Route for sticky sessions, and enabled (balancer_manage adds members disabled). */
    params = apr_table_make(r->pool, 4);
    apr_table_setn(params, "b", rep->balancer);
    apr_table_setn(params, "w", rep->worker);
    apr_table_setn(params, "w_wr", rep->route);
    apr_table_setn(params, "w_status_D", "0");
    prx_balancer_manage(r, params);
    if (w->s->status & PROXY_WORKER_DISABLED) {
        return apr_psprintf(r->pool, "cannot enable %s in %s", rep->worker, bname);
    }
    /* Without a connection the member is put in error like any other; it
     * comes back as soon as one arrives (prx_node_ready) or after 1 s. */
    w->s->retry = apr_time_from_sec(1);
    w->s->retry_set = 1;
    prx_adopt_worker(w, rep->node);
    return NULL;
}

static int prx_mcmp_handler(request_rec *r)
{
    prx_mcmp_reply rep;
    char *body;
    apr_size_t len = 0;
    long long id = 0;
    int rc;
    apr_size_t max;

    if (!r->handler || strcmp(r->handler, "proxy-reversed-mcmp") != 0) {
        return DECLINED;
    }
    /* Read the whole body (MCMP bodies are small). */
    max = PRX_MCMP_READ_MAX();
    body = apr_palloc(r->pool, max + 1);
    if (ap_setup_client_block(r, REQUEST_CHUNKED_DECHUNK) == OK && ap_should_client_block(r)) {
        long n;
        while ((n = ap_get_client_block(r, body + len, max - len)) > 0) {
            len += n;
            if (len >= max) {
                break;
            }
        }
        if (n < 0) {
            len = 0;
        }
    }
    body[len] = '\0';
    if (ap_scoreboard_image) {
        id = (long long)ap_scoreboard_image->global->restart_time;
    }
    prx_mcmp(r->method, r->uri, body, len, id, &rep);
    if (rep.status == 200 && rep.join != PRX_JOIN_NONE) {
        const char *why = prx_mcmp_join(r, &rep);
        if (why) {
            int node = rep.node, is_new = rep.join_new;
            prx_mcmp_reply_free(&rep);
            prx_mcmp_join_failed(node, is_new, why, &rep);
        }
    }
    if (rep.status != 200) {
        /* As mod_manager: HTTP 500 and the MCMP error in headers. */
        r->status_line = "ERROR";
        apr_table_set(r->err_headers_out, "Version", "0.2.1");
        apr_table_set(r->err_headers_out, "Type", rep.err_type ? rep.err_type : "GENERAL");
        apr_table_set(r->err_headers_out, "Mess", rep.err_mess ? rep.err_mess : "GENERAL: internal error");
        prx_mcmp_reply_free(&rep);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    ap_set_content_type(r, "text/plain");
    ap_set_content_length(r, rep.body_len);
    if (rep.body_len && !r->header_only) {
        ap_rwrite(rep.body, (int)rep.body_len, r);
    }
    prx_mcmp_reply_free(&rep);
    rc = OK;
    return rc;
}

/* ------------------------------------------------------------------ */
/* Registration                                                        */
/* ------------------------------------------------------------------ */

static void prx_register_hooks(apr_pool_t *p)
{
    static const char *const after_proxy[] = {"mod_proxy.c", "mod_proxy_balancer.c", NULL};

    ap_hook_pre_config(prx_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_check_config(prx_check_config, after_proxy, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(prx_hook_post_config, after_proxy, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(prx_hook_child_init, after_proxy, NULL, APR_HOOK_MIDDLE);
#if AP_MODULE_MAGIC_AT_LEAST(20120211, 110)
    ap_hook_child_stopping(prx_hook_child_stopping, NULL, NULL, APR_HOOK_MIDDLE);
#endif
    proxy_hook_scheme_handler(prx_scheme_handler, NULL, NULL, APR_HOOK_REALLY_FIRST);
    ap_hook_handler(prx_status_handler, NULL, NULL, APR_HOOK_MIDDLE);
    APR_OPTIONAL_HOOK(ap, status_hook, prx_mod_status_hook, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(prx_mcmp_handler, NULL, NULL, APR_HOOK_MIDDLE);
    prx_cluster_register_hooks(p);
}

PRX_EXPORT module AP_MODULE_DECLARE_DATA proxy_reversed_module = {
    STANDARD20_MODULE_STUFF,
    NULL,               /* per-directory config creator */
    NULL,               /* dir config merger */
    NULL,               /* server config creator */
    NULL,               /* server config merger */
    prx_cmds,           /* command table */
    prx_register_hooks, /* hook registration */
    AP_MODULE_FLAG_NONE
};
