/*
 * mod_proxy_reversed beside mod_cluster.
 *
 * hooks that let reversed nodes registered through mod_manager work.
 * Everything here is inert when mod_manager/mod_proxy_cluster are not loaded.
 *
 * - MCMP: an input filter copies (never consumes) the body of the CONFIG,
 *   STATUS and APP commands that mod_manager reads; once mod_manager has
 *   answered 200, the whole body goes to prx_cluster_observe, which registers
 *   a Reversed node here too (listeners open; its Type://Host:Port worker,
 *   which mod_proxy_cluster creates, is then served over reversed
 *   connections) and keeps the Load of a STATUS for the status page.
 * - Health: mod_proxy_cluster's "proxy_cluster"/"balancer"/"0" provider (that
 *   mod_manager's STATUS and PING call) is wrapped: a reversed node is up iff
 *   it has authenticated reversed connections in some child; its address
 *   (httpd's own listener) is never dialled. Other nodes go to the original.
 * - A per-child watchdog callback keeps a live reversed connection at the head
 *   of each reversed worker's connection pool (mod_proxy_cluster's idle-node
 *   CPING then runs over it instead of dialling our listener) and closes
 *   pooled connections whose backend went away (so that the connection count
 *   STATUS reads does not include them).
 * - A STATUS refused for want of links keeps its Load; a per-child watchdog
 *   callback (100 ms) applies it once the node has a live link (section 4).
 * - Health checks that still dial Host:Port (prefork) reach the node's first
 *   port and are answered there from the node's liveness (src/accept.rs).
 * Nothing here uses the general-purpose pointer of proxy_worker: it is mod_proxy_cluster's.
 *
 * Interfaces of mod_cluster used here (declared below, not included):
 *  - mod_manager's handler reads the MCMP body from r->input_filters with
 *    ap_get_brigade, and answers 200 (or 500 and MCMP error headers);
 *  - mod_proxy_cluster registers the provider "proxy_cluster", "balancer", "0"
 *    (struct balancer_method of its include/mod_proxy_cluster.h) in its
 *    register_hooks; mod_manager looks it up once, in its post_config (MIDDLE);
 *  - its workers are balancer members named Type://host:port whose shared
 *    status (w->s) lives in mod_manager's node table, w->s->index = node id.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_filter.h"
#include "ap_provider.h"
#include "mod_proxy.h"
#include "mod_watchdog.h"
#include "apr_strings.h"
#include "apr_portable.h"
#include "apr_optional.h"
#include "apr_reslist.h"

#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "internal.h"

APLOG_USE_MODULE(proxy_reversed);

#define PRX_CL_FN "PROXY_REVERSED_CLUSTER"

/* ------------------------------------------------------------------ */
/* What is loaded (set in post_config, in the parent)                  */
/* ------------------------------------------------------------------ */

static int prx_cl_manager;       /* mod_manager.c is loaded */
static int prx_cl_proxy_cluster; /* mod_proxy_cluster.c is loaded */


/* ------------------------------------------------------------------ */
/* 1. Watching the MCMP messages mod_manager reads                     */
/* ------------------------------------------------------------------ */

/* As much body as is copied (prx_mcmp_handler reads as much). */
#define PRX_CL_MAX_BODY PRX_MCMP_READ_MAX()
#define PRX_CL_IN "PROXY_REVERSED_MCMP_COPY"
#define PRX_CL_OUT "PROXY_REVERSED_MCMP_OBSERVE"
#define PRX_CL_KEY "proxy-reversed-cluster-mcmp"

typedef struct {
    request_rec *r;
    char *buf;         /* PRX_CL_MAX_BODY bytes, allocated at the first data */
    apr_size_t len;
    int eos;           /* the whole body went by */
    int overflow;      /* more than PRX_CL_MAX_BODY: not observed */
    int observed;
} prx_cl_body;

/* The commands whose body prx_cluster_observe wants. */
static int prx_cl_watched_method(const char *m)
{
    return strcmp(m, "CONFIG") == 0 || strcmp(m, "STATUS") == 0 || strcmp(m, "ENABLE-APP") == 0
           || strcmp(m, "DISABLE-APP") == 0 || strcmp(m, "STOP-APP") == 0
           || strcmp(m, "REMOVE-APP") == 0;
}

/* Pass-through: whatever the filters below return goes up unchanged; only a
 * copy of the data buckets is kept. Speculative reads consume nothing and
 * are not copied. */
static apr_status_t prx_cl_in_filter(ap_filter_t *f, apr_bucket_brigade *bb, ap_input_mode_t mode,
                                     apr_read_type_e block, apr_off_t readbytes)
{
    prx_cl_body *ctx = f->ctx;
    apr_bucket *before = APR_BRIGADE_EMPTY(bb) ? NULL : APR_BRIGADE_LAST(bb);
    apr_bucket *e;
    apr_status_t rv = ap_get_brigade(f->next, bb, mode, block, readbytes);

    if (rv != APR_SUCCESS || !ctx || mode == AP_MODE_SPECULATIVE || mode == AP_MODE_INIT) {
        return rv;
    }
    for (e = before ? APR_BUCKET_NEXT(before) : APR_BRIGADE_FIRST(bb);
         e != APR_BRIGADE_SENTINEL(bb); e = APR_BUCKET_NEXT(e)) {
        const char *data;
        apr_size_t n;
        if (APR_BUCKET_IS_EOS(e)) {
            ctx->eos = 1;
            continue;
        }
        if (APR_BUCKET_IS_METADATA(e) || ctx->overflow || ctx->eos) {
            continue;
        }
        /* Reading a bucket may morph it (file, pipe) but never changes the
         * bytes the next reader sees. */
        if (apr_bucket_read(e, &data, &n, APR_BLOCK_READ) != APR_SUCCESS) {
            ctx->overflow = 1; /* cannot copy: give up observing, pass on */
            continue;
        }
        if (n == 0) {
            continue;
        }
        if (ctx->len + n > PRX_CL_MAX_BODY) {
            ctx->overflow = 1;
            continue;
        }
        if (!ctx->buf) {
            ctx->buf = apr_palloc(ctx->r->pool, PRX_CL_MAX_BODY + 1);
        }
        memcpy(ctx->buf + ctx->len, data, n);
        ctx->len += n;
    }
    return rv;
}

/* Once: the whole body went through and mod_manager accepted the message. */
static void prx_cl_observe(prx_cl_body *ctx)
{
    request_rec *r = ctx->r;
    if (ctx->observed) {
        return;
    }
    ctx->observed = 1;
    if (r->status != HTTP_OK) {
        return;
    }
    if (!ctx->eos || ctx->overflow) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                      "PRX1007: MCMP %s: the body mod_manager read was not seen whole (%s): not observed",
                      r->method, ctx->overflow ? "over 64 KiB or unreadable" : "no end of body");
        return;
    }
    if (!ctx->buf) {
        ctx->buf = apr_palloc(r->pool, 1);
    }
    ctx->buf[ctx->len] = '\0';
    prx_cluster_observe(r->method, r->uri, ctx->buf, ctx->len);
}

/* First output of mod_manager's answer: its status is decided (200, or the
 * 500 of an MCMP error) and nothing has reached the client yet, so the node
 * exists here before the sender can send its next message. */
static apr_status_t prx_cl_out_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    if (f->ctx) {
        prx_cl_observe(f->ctx);
    }
    ap_remove_output_filter(f);
    return ap_pass_brigade(f->next, bb);
}

static void prx_cl_insert_filter(request_rec *r)
{
    prx_cl_body *ctx;
    if (!prx_cl_manager || r->main || r->method_number != M_INVALID || !r->method
        || !prx_cl_watched_method(r->method) || prx_node_count() == 0) {
        return;
    }
    /* Our own receiver answers this request: it registers by itself. */
    if (r->handler && strcmp(r->handler, "proxy-reversed-mcmp") == 0) {
        return;
    }
    ctx = apr_pcalloc(r->pool, sizeof(*ctx));
    ctx->r = r;
    ap_add_input_filter(PRX_CL_IN, ctx, r, r->connection);
    ap_add_output_filter(PRX_CL_OUT, ctx, r, r->connection);
    apr_pool_userdata_setn(ctx, PRX_CL_KEY, NULL, r->pool);
}

/* In case no output went through the filter (it always does in httpd 2.4:
 * at least the final EOS): after the answer, still in the request. */
static int prx_cl_log_transaction(request_rec *r)
{
    void *ctx = NULL;
    if (prx_cl_manager && r->method_number == M_INVALID
        && apr_pool_userdata_get(&ctx, PRX_CL_KEY, r->pool) == APR_SUCCESS && ctx) {
        prx_cl_observe(ctx);
    }
    return DECLINED;
}

/* ------------------------------------------------------------------ */
/* 2. STATUS and PING of reversed nodes                                */
/* ------------------------------------------------------------------ */

/* mod_proxy_cluster's struct balancer_method (include/mod_proxy_cluster.h),
 * provider "proxy_cluster", "balancer", "0": five function pointers. Only the
 * first two are called here; the others are copied through untouched. */
struct prx_cl_nodeinfo; /* mod_manager's nodeinfo_t: never dereferenced */
typedef struct {
    /* 0 if up (and the load applied), HTTP_INTERNAL_SERVER_ERROR otherwise.
     * load: 1..100 load factor, 0 standby, -1 broken, -2 only check. */
    int (*proxy_node_isup)(request_rec *r, int id, int load);
    int (*proxy_host_isup)(request_rec *r, const char *scheme, const char *host, const char *port);
    proxy_worker *(*proxy_node_getid)(request_rec *r, const char *balancername, const char *scheme,
                                      const char *host, const char *port, int *id,
                                      const proxy_server_conf **the_conf);
    void (*reenable_proxy_worker)(server_rec *s, struct prx_cl_nodeinfo *node, proxy_worker *worker,
                                  struct prx_cl_nodeinfo *nodeinfo, const proxy_server_conf *the_conf);
    int (*proxy_node_get_free_id)(request_rec *r, int node_table_size);
} prx_cl_balancer_method;

static const prx_cl_balancer_method *prx_cl_orig;
static prx_cl_balancer_method prx_cl_wrap;

/* mod_proxy_cluster's proxy_node_isup makes the node's balancer and worker
 * exist in this process, and returns 0 if it found the worker, without any
 * ping and without changing the worker for this load (not -1, -2 or >= 0). */
#define PRX_CL_LOAD_NOCHECK (-3)

/* The worker of mod_proxy_cluster's node `id` (w->s->index) if it belongs to
 * a reversed node. All of mod_proxy_cluster's copies of one node's worker (one
 * per virtual host) share w->s; when two different w->s match (a removed
 * node's worker that kept the id), *ambiguous is set. */
typedef struct {
    int id;
    proxy_worker *found;
    int node;
    int ambiguous;
} prx_cl_find_baton;

static int prx_cl_find_one(proxy_worker *w, proxy_server_conf *conf, server_rec *s, void *baton)
{
    prx_cl_find_baton *f = baton;
    int node;
    if (!w || !w->s || w->s->index != f->id) {
        return 0;
    }
    node = prx_node_for_worker(prx_worker_name(w));
    if (node < 0) {
        return 0;
    }
    if (f->found && f->found->s != w->s) {
        f->ambiguous = 1;
        f->found = NULL;
        return 1;
    }
    if (!f->found) {
        f->found = w;
        f->node = node;
    }
    return 0;
}

static proxy_worker *prx_cl_find_by_id(int id, int *node_out, int *ambiguous)
{
    prx_cl_find_baton f = {id, NULL, -1, 0};
    prx_each_worker(ap_server_conf, PRX_EACH_MEMBERS, prx_cl_find_one, &f);
    *ambiguous = f.ambiguous;
    if (f.found) {
        *node_out = f.node;
    }
    return f.found;
}

/* mod_proxy_cluster's set_worker_load, reproduced. */
static void prx_cl_set_load(proxy_worker *w, int load)
{
    if (load < -1 || load > 100) {
        return;
    }
    if (load == -1) {
        w->s->status |= PROXY_WORKER_IN_ERROR;
    }
    else if (load == 0) {
        w->s->status &= ~PROXY_WORKER_IN_ERROR;
        w->s->status |= PROXY_WORKER_HOT_STANDBY;
    }
    else {
        w->s->status &= ~(PROXY_WORKER_IN_ERROR | PROXY_WORKER_STOPPED | PROXY_WORKER_DISABLED
                          | PROXY_WORKER_HOT_STANDBY);
    }
    w->s->lbfactor = load;
}

static int prx_cl_node_isup(request_rec *r, int id, int load)
{
    proxy_worker *w;
    int node = -1, ambiguous = 0, st, n;

    if (load == -1) {
        /* "broken": nothing to check, the original marks it in error. */
        w = prx_cl_find_by_id(id, &node, &ambiguous);
        if (w) {
            prx_cluster_status(node, -1, 0);
        }
        return prx_cl_orig->proxy_node_isup(r, id, load);
    }
    /* Makes the worker exist here (the first STATUS may come before this
     * child has built it); no ping, no change. */
    st = prx_cl_orig->proxy_node_isup(r, id, PRX_CL_LOAD_NOCHECK);
    if (st != 0) {
        return st; /* unknown or removed node, or no worker: as the original */
    }
    w = prx_cl_find_by_id(id, &node, &ambiguous);
    if (!w) {
        if (ambiguous) {
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                          "PRX1008: mod_cluster node %d: two reversed workers carry this id; "
                          "left to mod_proxy_cluster", id);
        }
        return prx_cl_orig->proxy_node_isup(r, id, load);
    }
    n = prx_node_connections(node);
    if (load >= 0) {
        /* A refused Load waits for the node's first link (see 4. below). */
        prx_cluster_status(node, load, n > 0);
    }
    if (n <= 0) {
        w->s->status |= PROXY_WORKER_IN_ERROR;
        w->s->error_time = apr_time_now();
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      "PRX1009: mod_cluster node %d: reversed worker %s has no connection: down",
                      id, prx_worker_name(w));
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    prx_cl_set_load(w, load);
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                  "PRX1010: mod_cluster node %d: reversed worker %s has %d connection(s): up, load %d",
                  id, prx_worker_name(w), n, load);
    return 0;
}

/* mod_proxy_cluster's worker name for scheme://host:port: host in lower
 * case (IPv6 in brackets), no port when it is the scheme's default. */
static const char *prx_cl_url(apr_pool_t *p, const char *scheme, const char *host, const char *port)
{
    char *sch = apr_pstrdup(p, scheme);
    char *h;
    int nport = atoi(port);
    ap_str_tolower(sch);
    if (strchr(host, ':') && host[0] != '[') {
        h = apr_pstrcat(p, "[", host, "]", NULL);
    }
    else {
        h = apr_pstrdup(p, host);
    }
    ap_str_tolower(h);
    if (nport > 0 && nport == ap_proxy_port_of_scheme(sch)) {
        return apr_pstrcat(p, sch, "://", h, NULL);
    }
    return apr_psprintf(p, "%s://%s:%d", sch, h, nport);
}

static int prx_cl_host_isup(request_rec *r, const char *scheme, const char *host, const char *port)
{
    const char *url;
    int node;
    if (!scheme || !host || !port) {
        return prx_cl_orig->proxy_host_isup(r, scheme, host, port);
    }
    url = prx_cl_url(r->pool, scheme, host, port);
    node = prx_node_for_worker(url);
    if (node < 0) {
        if (prx_worker_reserved(url)) {
            /* httpd's own reversed ports: a dial would reach our listener. */
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                          "PRX1011: PING %s: in a range where httpd listens for reversed connections, "
                          "no reversed node owns it: down", url);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        return prx_cl_orig->proxy_host_isup(r, scheme, host, port);
    }
    return prx_node_connections(node) > 0 ? 0 : HTTP_INTERNAL_SERVER_ERROR;
}

/* REALLY_FIRST: before mod_manager's post_config looks the provider up.
 * ap_register_provider replaces the entry; mod_proxy_cluster registered its
 * own in register_hooks. */
static int prx_cl_post_config_first(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                                    server_rec *s)
{
    const prx_cl_balancer_method *cur;
    prx_cl_manager = ap_find_linked_module("mod_manager.c") != NULL;
    prx_cl_proxy_cluster = ap_find_linked_module("mod_proxy_cluster.c") != NULL;
    if (!prx_cl_proxy_cluster || prx_node_count() == 0) {
        return OK;
    }
    cur = ap_lookup_provider("proxy_cluster", "balancer", "0");
    if (!cur || cur == &prx_cl_wrap) {
        return OK;
    }
    if (!cur->proxy_node_isup || !cur->proxy_host_isup) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     "PRX1012: mod_proxy_cluster's balancer provider lacks its checks: reversed nodes "
                     "are checked by it (it dials their address)");
        return OK;
    }
    prx_cl_orig = cur;
    prx_cl_wrap = *cur;
    prx_cl_wrap.proxy_node_isup = prx_cl_node_isup;
    prx_cl_wrap.proxy_host_isup = prx_cl_host_isup;
    ap_register_provider(pconf, "proxy_cluster", "balancer", "0", &prx_cl_wrap);
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s,
                 "PRX1013: STATUS/PING of reversed nodes answered from their reversed connections "
                 "(mod_proxy_cluster's checks wrapped)");
    return OK;
}

/* ------------------------------------------------------------------ */
/* 3. Keeping mod_proxy_cluster's idle-node CPING off our listener     */
/* ------------------------------------------------------------------ */

/*
 * Every LBstatusRecalTime (5 s) of no traffic, mod_proxy_cluster's watchdog
 * acquires a connection of the node's worker and calls
 * ap_proxy_connect_backend, which dials only when the connection has no live
 * socket, then CPINGs (or OPTIONS) over it. A dial would reach our own
 * listener and fail (and put the node in error). So, once a second in each
 * child, for each reversed worker of mod_proxy_cluster's balancers (each
 * virtual host has its own copy of a node's worker, with its own pool):
 *  - the idle pooled connections are checked; those whose backend closed are
 *    closed here (which also retires them from the count STATUS uses);
 *  - a connection with a live socket is released last: the connection pool
 *    (apr_reslist) hands out the most recently released first, so it is the
 *    one the health check gets.
 *  - The health check uses the node's worker of the first server (in server
 *    order) that has one: only that copy is given one of this child's idle
 *    reversed connections when it has no live one, as the scheme handler
 *    does before a request. (Seeding every copy would park a connection per
 *    virtual host and child.)
 * Nothing is done for a worker in error, disabled or stopped (STATUS brings
 * it back), nor when the pool has no reslist (one connection per process).
 */
#define PRX_CL_TICK apr_time_from_sec(1)
#define PRX_CL_MAX_SWEEP 16
#define PRX_CL_WATCHDOG "_proxy_reversed_cluster_"

/* Gives conn a reversed connection of `node` taken from this child's idle
 * ones (no wait), as the scheme handler's attach does. */
static int prx_cl_give_socket(proxy_conn_rec *conn, proxy_worker *w, proxy_server_conf *conf,
                              server_rec *s, int node)
{
    int wait_ms = 0;
    int fd;

    if (!conn->address && w->s->hostname_ex[0]
        && ap_proxy_determine_address(PRX_CL_FN, conn, w->s->hostname_ex, w->s->port, 0, NULL,
                                      s) != APR_SUCCESS) {
        return 0;
    }
    fd = prx_take_fd(node, 1, &wait_ms);
    if (fd < 0) {
        return 0;
    }
    if (prx_attach(conn, w, conf, s, node, fd) != APR_SUCCESS) {
        return 0;
    }
    /* Verified just now: a request may use it within the node's reuse= time. */
    prx_link_released(fd);
    return 1;
}

static void prx_cl_tend(proxy_worker *w, int node, proxy_server_conf *conf, server_rec *s, int seed)
{
    proxy_conn_rec *conns[PRX_CL_MAX_SWEEP];
    proxy_conn_rec *live = NULL, *spare = NULL;
    int n = 0, i, hmax = w->s->hmax;

    while (n < PRX_CL_MAX_SWEEP) {
        proxy_conn_rec *c = NULL;
        /* Never take the last free slot of the pool: a request must not wait
         * (mod_proxy_cluster's workers wait 2 ms, then 503) because of us. */
        if (apr_reslist_acquired_count(w->cp->res) >= hmax - 1) {
            break;
        }
        if (ap_proxy_acquire_connection(PRX_CL_FN, &c, w, s) != OK) {
            if (c) {
                ap_proxy_release_connection(PRX_CL_FN, c, s);
            }
            break;
        }
        conns[n++] = c;
        if (!c->sock) {
            spare = c; /* never connected, or closed before: the parked ones are behind us */
            break;
        }
        /* Closes it (and retires it) if the backend went away. */
        if (ap_proxy_check_connection(PRX_CL_FN, c, s, 0, PROXY_CHECK_CONN_EMPTY) != APR_SUCCESS
            || !c->sock) {
            if (!spare) {
                spare = c;
            }
            continue;
        }
        if (!live) {
            live = c;
        }
    }
    if (seed && !live && spare && prx_node_connections(node) > 0
        && prx_cl_give_socket(spare, w, conf, s, node)) {
        live = spare;
    }
    /* Released in order, the live one last: it is at the head of the pool. */
    for (i = n - 1; i >= 0; i--) {
        if (conns[i] != live) {
            ap_proxy_release_connection(PRX_CL_FN, conns[i], s);
        }
    }
    if (live) {
        ap_proxy_release_connection(PRX_CL_FN, live, s);
    }
}

typedef struct {
    apr_pool_t *tp;
    apr_hash_t *seen, *seeded;
} prx_cl_tick_baton;

static int prx_cl_tick_one(proxy_worker *w, proxy_server_conf *conf, server_rec *s, void *baton)
{
    prx_cl_tick_baton *t = baton;
    int node;
    if (!w || !w->s || !w->cp || !w->cp->res || w->s->hmax < 2 || !w->s->is_address_reusable
        || w->s->disablereuse || !PROXY_WORKER_IS_USABLE(w)) {
        return 0;
    }
    if (apr_hash_get(t->seen, &w, sizeof(w))) {
        return 0;
    }
    apr_hash_set(t->seen, apr_pmemdup(t->tp, &w, sizeof(w)), sizeof(w), (void *)1);
    node = prx_node_for_worker(prx_worker_name(w));
    if (node >= 0) {
        /* The first copy of the node's worker in server order. */
        int first = !apr_hash_get(t->seeded, &node, sizeof(node));
        if (first) {
            apr_hash_set(t->seeded, apr_pmemdup(t->tp, &node, sizeof(node)), sizeof(node), (void *)1);
        }
        prx_cl_tend(w, node, conf, s, first);
    }
    return 0;
}

static apr_status_t prx_cl_tick(int state, void *data, apr_pool_t *pool)
{
    prx_cl_tick_baton t;

    if (state != AP_WATCHDOG_STATE_RUNNING || prx_node_count() == 0) {
        return APR_SUCCESS;
    }
    if (apr_pool_create(&t.tp, pool) != APR_SUCCESS) {
        return APR_SUCCESS;
    }
    t.seen = apr_hash_make(t.tp);
    t.seeded = apr_hash_make(t.tp);
    prx_each_worker((server_rec *)data, PRX_EACH_MEMBERS, prx_cl_tick_one, &t);
    apr_pool_destroy(t.tp);
    return APR_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* 4. A node's first link puts it in service                           */
/* ------------------------------------------------------------------ */

/*
 * mod_proxy_cluster builds a node's worker with lbfactor -1 ("not until a
 * STATUS says") and only a STATUS whose check passes sets the Load. The
 * first STATUS of a new node (mod_cluster's Java side sends CONFIG,
 * ENABLE-APP and STATUS back to back) comes before any reversed link
 * exists, so it is answered NOTOK above and its Load kept. Every 100 ms,
 * in each child, a node with a kept Load and live links in some child gets
 * that Load here, as mod_proxy_cluster's own STATUS handling would set it
 * (the worker's shared status lives in mod_manager's node table, so one
 * child does it for all). A node without links is never put in service.
 */
#define PRX_CL_LIFT_TICK apr_time_from_msec(100)

typedef struct {
    apr_pool_t *tp;
    apr_hash_t *lifted; /* node -> load + 1 */
} prx_cl_lift_baton;

static int prx_cl_lift_one(proxy_worker *w, proxy_server_conf *conf, server_rec *s, void *baton)
{
    prx_cl_lift_baton *b = baton;
    int node, load;
    if (!w || !w->s) {
        return 0;
    }
    node = prx_node_for_worker(prx_worker_name(w));
    if (node < 0) {
        return 0;
    }
    load = prx_cluster_lift_load(node);
    if (load < 0) {
        return 0;
    }
    prx_cl_set_load(w, load);
    if (!apr_hash_get(b->lifted, &node, sizeof(node))) {
        apr_hash_set(b->lifted, apr_pmemdup(b->tp, &node, sizeof(node)), sizeof(node),
                     (void *)(apr_uintptr_t)(load + 1));
    }
    return 0;
}

static apr_status_t prx_cl_lift_tick(int state, void *data, apr_pool_t *pool)
{
    prx_cl_lift_baton b;
    apr_hash_index_t *hi;

    if (state != AP_WATCHDOG_STATE_RUNNING || prx_node_count() == 0 || !prx_cluster_lift_due()) {
        return APR_SUCCESS;
    }
    if (apr_pool_create(&b.tp, pool) != APR_SUCCESS) {
        return APR_SUCCESS;
    }
    b.lifted = apr_hash_make(b.tp);
    prx_each_worker((server_rec *)data, PRX_EACH_MEMBERS, prx_cl_lift_one, &b);
    for (hi = apr_hash_first(b.tp, b.lifted); hi; hi = apr_hash_next(hi)) {
        const void *key;
        void *val;
        apr_hash_this(hi, &key, NULL, &val);
        prx_cluster_lifted(*(const int *)key, (int)(apr_uintptr_t)val - 1);
    }
    apr_pool_destroy(b.tp);
    return APR_SUCCESS;
}

/* After mod_proxy_cluster's post_config, before mod_watchdog's (LAST), which
 * starts the threads of the instances that have callbacks. */
static int prx_cl_post_config_watchdog(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                                       server_rec *s)
{
    APR_OPTIONAL_FN_TYPE(ap_watchdog_get_instance) *get_instance;
    APR_OPTIONAL_FN_TYPE(ap_watchdog_register_callback) *register_callback;
    ap_watchdog_t *wd = NULL;

    if (!prx_cl_proxy_cluster || prx_node_count() == 0
        || ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    get_instance = APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_get_instance);
    register_callback = APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_register_callback);
    if (!get_instance || !register_callback
        || get_instance(&wd, PRX_CL_WATCHDOG, 0, 0, pconf) != APR_SUCCESS
        || register_callback(wd, PRX_CL_TICK, s, prx_cl_tick) != APR_SUCCESS
        || register_callback(wd, PRX_CL_LIFT_TICK, s, prx_cl_lift_tick) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     "PRX1014: no watchdog for reversed workers of mod_proxy_cluster (mod_watchdog?): "
                     "its idle-node health check may dial httpd's own reversed listeners");
    }
    return OK;
}

/* ------------------------------------------------------------------ */
/* Registration                                                        */
/* ------------------------------------------------------------------ */

void prx_cluster_register_hooks(apr_pool_t *p)
{
    static const char *const before_manager[] = {"mod_manager.c", NULL};
    static const char *const after_cluster[] = {"mod_proxy_cluster.c", NULL};
    static const char *const before_watchdog[] = {"mod_watchdog.c", NULL};

    ap_hook_post_config(prx_cl_post_config_first, NULL, before_manager, APR_HOOK_REALLY_FIRST);
    ap_hook_post_config(prx_cl_post_config_watchdog, after_cluster, before_watchdog,
                        APR_HOOK_MIDDLE);
    ap_hook_insert_filter(prx_cl_insert_filter, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_log_transaction(prx_cl_log_transaction, NULL, NULL, APR_HOOK_MIDDLE);
    ap_register_input_filter(PRX_CL_IN, prx_cl_in_filter, NULL, AP_FTYPE_RESOURCE);
    ap_register_output_filter(PRX_CL_OUT, prx_cl_out_filter, NULL, AP_FTYPE_RESOURCE);
}
