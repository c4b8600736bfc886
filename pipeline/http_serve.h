/* A minimal static-file HTTP/1.1 server on the loopback interface, for
 * `sdw demo`: the emoji images are served to the download stage over HTTP,
 * so the demo exercises the same download code path as LAION URLs.
 *
 * GET and HEAD of regular files under root (no "..", no hidden path
 * components, no symlinks leaving root are followed: paths are resolved
 * with realpath and must stay under root's), one response per connection
 * ("Connection: close"), Content-Type from the extension. Anything else is
 * 400/404/405. One background thread accepts and answers connections in
 * turn (files are small). */
#ifndef SDW_PIPELINE_HTTP_SERVE_H
#define SDW_PIPELINE_HTTP_SERVE_H

#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdw_http_server sdw_http_server;

/* Serves root (borrowed path copied) on 127.0.0.1:port (0: any free port);
 * *port_out receives the port. *out: sdw_http_server_stop. */
sdw_status sdw_http_server_start(const char *root, int port, sdw_http_server **out, int *port_out);
/* Requests answered so far. */
long sdw_http_server_requests(const sdw_http_server *s);
/* Stops the thread, closes the socket, frees; NULL is a no-op. */
void sdw_http_server_stop(sdw_http_server *s);

#ifdef __cplusplus
}
#endif
#endif
