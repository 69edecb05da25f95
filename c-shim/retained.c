/*
 * MCMP registrations across a restart (graceful or not, while the parent
 * process lives).
 *
 * The registry of nodes registered through MCMP is a mapping of one
 * generation, and the balancer members made for them at run time (through
 * balancer_manage) are rebuilt with the configuration. So:
 *  - pconf cleanup (parent, the old generation ending): the active
 *    registrations are written as text into httpd's retained data, which
 *    lives in the process pool and outlives the DSO that is unloaded and
 *    loaded again;
 *  - check_config (parent, the new configuration read, before
 *    mod_proxy_balancer's post_config shares the members): each registration
 *    this configuration still admits gets its balancer member back, defined
 *    as a BalancerMember would be (route, 1 s retry), so that mod_proxy_balancer
 *    gives it a slot and initialises it in every child like any other;
 *  - post_config: Rust fills the new registry with them.
 * Beside mod_cluster (mod_manager loaded) no member is made here: the
 * worker is mod_proxy_cluster's. A stop ends the process and with it
 * everything retained: nodes register again (as with mod_manager).
 */
#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "mod_proxy.h"
#include "apr_strings.h"

#include <stdlib.h>
#include <string.h>

#include "internal.h"

APLOG_USE_MODULE(proxy_reversed);

#define PRX_RETAINED_KEY "mod_proxy_reversed: MCMP registrations"

typedef struct {
    char *text; /* malloc'ed: the retained data's pool is never cleared */
    apr_size_t len;
} prx_retained_t;

static prx_retained_t *prx_retained(void)
{
    prx_retained_t *r = ap_retained_data_get(PRX_RETAINED_KEY);
    if (!r) {
        r = ap_retained_data_create(PRX_RETAINED_KEY, sizeof(*r));
    }
    return r;
}

void prx_retained_save(void)
{
    size_t len = 0;
    char *doc = prx_registry_snapshot(&len);
    prx_retained_t *r = prx_retained();
    free(r->text);
    r->text = NULL;
    r->len = 0;
    if (doc) {
        r->text = malloc(len + 1);
        if (r->text) {
            memcpy(r->text, doc, len + 1);
            r->len = len;
        }
        prx_string_free(doc);
    }
}

/* Makes the member `worker` (route `route`) of balancer://`bname` in the
 * first server that declares that balancer. NULL or why not. */
static const char *prx_restore_one(apr_pool_t *pconf, apr_pool_t *ptemp, server_rec *main_s,
                                   const char *bname, const char *url, const char *route)
{
    const char *full = apr_pstrcat(ptemp, BALANCER_PREFIX, bname, NULL);
    server_rec *s;
    for (s = main_s; s; s = s->next) {
        proxy_server_conf *conf = ap_get_module_config(s->module_config, &proxy_module);
        proxy_balancer *b;
        proxy_worker *w;
        char *err;
        if (!conf || !(b = ap_proxy_get_balancer(ptemp, conf, full, 0))) {
            continue;
        }
        w = ap_proxy_get_worker(ptemp, b, conf, url);
        if (!w) {
            err = ap_proxy_define_worker(pconf, &w, b, conf, url, 0);
            if (err) {
                return apr_psprintf(ptemp, "cannot define %s in %s: %s", url, full, err);
            }
            PROXY_COPY_CONF_PARAMS(w, conf);
            if (!w->section_config) {
                w->section_config = b->section_config;
            }
        }
        if (PROXY_STRNCPY(w->s->route, route) != APR_SUCCESS) {
            return "its route is too long for mod_proxy";
        }
        /* As prx_mcmp_join leaves a member it made. */
        w->s->retry = apr_time_from_sec(1);
        w->s->retry_set = 1;
        w->s->is_address_reusable = 1;
        w->s->disablereuse = 0;
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s,
                     "PRX1050: MCMP node '%s': member %s of %s made again after the restart", route, url, full);
        return NULL;
    }
    return apr_psprintf(ptemp, "%s is not declared any more (<Proxy %s>)", full, full);
}

void prx_retained_restore(apr_pool_t *pconf, apr_pool_t *ptemp, server_rec *main_s)
{
    prx_retained_t *r = ap_retained_data_get(PRX_RETAINED_KEY);
    int n, i;
    int members = ap_find_linked_module("mod_manager.c") == NULL;
    n = (r && r->text) ? prx_restore_begin(r->text, r->len) : prx_restore_begin(NULL, 0);
    if (r) {
        /* Read once: the next pconf cleanup writes what this generation has. */
        free(r->text);
        r->text = NULL;
        r->len = 0;
    }
    for (i = 0; members && i < n; i++) {
        const char *b = prx_restore_member(i, 0), *url = prx_restore_member(i, 1),
                   *route = prx_restore_member(i, 2);
        const char *why;
        if (!b || !url || !route) {
            continue;
        }
        why = prx_restore_one(pconf, ptemp, main_s, b, url, route);
        if (why) {
            prx_restore_drop(i, why);
        }
    }
}
