/*
 * What the two C files of the shim share (mod_proxy_reversed.c and
 * cluster.c): the worker name, one walk over every worker of every server,
 * the attach of a backend-initiated socket, and the MCMP body limit.
 */
#ifndef PRX_INTERNAL_H
#define PRX_INTERNAL_H

#include "apr_pools.h"
#include "httpd.h"
#include "mod_proxy.h"
#include "rust_api.h"

/* The name mod_proxy knows a worker by (what ProxyReversed names). */
static inline const char *prx_worker_name(proxy_worker *w)
{
    return w->s->name_ex[0] ? w->s->name_ex : w->s->name;
}

/* Which workers prx_each_worker visits. */
#define PRX_EACH_PROXYPASS 1 /* the servers' own workers (ProxyPass to a URL) */
#define PRX_EACH_MEMBERS 2   /* every balancer's members */
#define PRX_EACH_ALL (PRX_EACH_PROXYPASS | PRX_EACH_MEMBERS)

/* Called for each worker (with its server's proxy configuration); a
 * non-zero return stops the walk. */
typedef int (*prx_worker_fn)(proxy_worker *w, proxy_server_conf *conf, server_rec *s, void *baton);

/* Calls fn on every worker of every server from main_s on, in server order. */
void prx_each_worker(server_rec *main_s, int which, prx_worker_fn fn, void *baton);

/* Wraps a backend-initiated fd of `node` into conn->sock with the worker's
 * socket options, as ap_proxy_connect_backend would leave a dialled socket;
 * counts it retired when mod_proxy closes it. On failure the fd is closed
 * and counted retired. */
apr_status_t prx_attach(proxy_conn_rec *conn, proxy_worker *worker, proxy_server_conf *conf,
                        server_rec *s, int node, int fd);

/* MCMP bodies are read up to the codec's limit plus one byte: a longer body
 * is then refused by the codec instead of being cut. */
#define PRX_MCMP_READ_MAX() (prx_mcmp_max_body() + 1)

/* cluster.c: hooks beside mod_cluster (mod_manager + mod_proxy_cluster). */
void prx_cluster_register_hooks(apr_pool_t *p);

/* MCMP registrations across a restart (retained.c): saved at pconf cleanup,
 * their balancer members made again in check_config. */
void prx_retained_save(void);
void prx_retained_restore(apr_pool_t *pconf, apr_pool_t *ptemp, server_rec *main_s);

#endif
