/* tls.c: TLS for downstream listeners. A server SSL_CTX per TLS listener is built with each
 * configuration snapshot (start-up and every reload, on the control thread) and shared by the workers;
 * an accepted socket gets an OpenSSL bufferevent on the current snapshot's context, and once the
 * handshake is done ALPN decides which codec owns the connection: "h2" -> http2.c, "http/1.1" or no
 * ALPN -> http1.c. */
#include "jwtgate/tls.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "jwtgate/common.h"
#include "jwtgate/http1.h"
#include "jwtgate/http2.h"
#include "jwtgate/log.h"
#include "jwtgate/worker.h"

/* ALPN protocol list in wire format, in our order of preference (RFC 7301 section 3.1). */
static const unsigned char tls_alpn_protos[] = "\x02h2\x08http/1.1";

/* One handshake in progress; freed when it ends either way. */
struct tls_handshake {
	struct worker *w;
	struct bufferevent *bev;
	struct sockaddr_storage peer;
	socklen_t peer_len;
	int listener_index;
};

/* ALPN selection: the first of our protocols the client offers; without overlap the handshake
 * goes on without ALPN (then HTTP/1.1). */
static int tls_alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                              const unsigned char *in, unsigned int inlen, void *arg)
{
	unsigned char *sel;

	if (SSL_select_next_proto(&sel, outlen, tls_alpn_protos, sizeof(tls_alpn_protos) - 1, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

/* The session ticket keys of an OpenSSL 3 context: name (16), HMAC secret (32), AES key (32). */
#define TLS_TICKET_KEYS_LEN 80

struct ssl_ctx_st *tls_server_ctx_new(const struct config_listener *l, struct ssl_ctx_st *prev, FILE *err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL) {
		fprintf(err, "jwtgate: listener %s: cannot create a TLS context\n", l->name);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* RFC 9113 section 9.2.2: no renegotiation under HTTP/2; compression is off by default. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_use_certificate_chain_file(ctx, l->tls_cert_file) != 1) {
		fprintf(err, "jwtgate: listener %s: certificateFile %s: %s\n", l->name, l->tls_cert_file,
		        ERR_reason_error_string(ERR_get_error()));
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, l->tls_key_file, SSL_FILETYPE_PEM) != 1) {
		fprintf(err, "jwtgate: listener %s: privateKeyFile %s: %s\n", l->name, l->tls_key_file,
		        ERR_reason_error_string(ERR_get_error()));
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		fprintf(err, "jwtgate: listener %s: the private key does not match the certificate\n",
		        l->name);
		goto fail;
	}
	SSL_CTX_set_alpn_select_cb(ctx, tls_alpn_select_cb, NULL);
	if (prev != NULL) {
		/* A new context draws new ticket keys: take the running ones over, so that clients resume
		 * their sessions across a reload (RFC 8446 section 2.2) instead of all doing a full
		 * handshake at once. The keys never leave the process. */
		unsigned char keys[TLS_TICKET_KEYS_LEN];

		if (SSL_CTX_get_tlsext_ticket_keys(prev, keys, sizeof(keys)) != 1 ||
		    SSL_CTX_set_tlsext_ticket_keys(ctx, keys, sizeof(keys)) != 1)
			log_warn("listener %s: session ticket keys not carried over; clients resume no "
			         "session across this reload",
			         l->name);
		OPENSSL_cleanse(keys, sizeof(keys));
	}
	return ctx;
fail:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}

void tls_ctx_free(struct ssl_ctx_st *ctx)
{
	SSL_CTX_free(ctx);
}

static void tls_handshake_fail(struct tls_handshake *hs)
{
	bufferevent_free(hs->bev);
	atomic_fetch_sub(&worker_open_conns, 1);
	free(hs);
}

/* Handshake done (or failed): hand the connection to the codec ALPN chose. */
static void tls_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct tls_handshake *hs = arg;
	const unsigned char *proto = NULL;
	unsigned int proto_len = 0;
	struct worker *w = hs->w;
	int idx = hs->listener_index;
	struct sockaddr_storage peer = hs->peer;
	socklen_t peer_len = hs->peer_len;
	int rc;

	if (!(what & BEV_EVENT_CONNECTED)) {
		unsigned long e = bufferevent_get_openssl_error(bev);

		log_debug("tls: handshake failed: %s",
		          e ? ERR_reason_error_string(e) : "connection closed or timed out");
		tls_handshake_fail(hs);
		return;
	}
	SSL_get0_alpn_selected(bufferevent_openssl_get_ssl(bev), &proto, &proto_len);
	free(hs);
	bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
	bufferevent_set_timeouts(bev, NULL, NULL);
	if (proto_len == 2 && memcmp(proto, "h2", 2) == 0)
		rc = http2_conn_takeover(w, bev, (const struct sockaddr *)&peer, peer_len, idx, true);
	else
		rc = http1_conn_accept_bev(w, bev, (const struct sockaddr *)&peer, peer_len, idx, true);
	if (rc < 0)
		atomic_fetch_sub(&worker_open_conns, 1);
}

int tls_accept(struct worker *w, struct ssl_ctx_st *ctx, int fd, const struct sockaddr *peer,
               socklen_t peer_len, int listener_index)
{
	struct tls_handshake *hs = calloc(1, sizeof(*hs));
	uint64_t ms = w->cfg->limits.header_timeout_ms;
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	SSL *ssl = NULL;

	if (hs == NULL)
		goto fail;
	ssl = SSL_new(ctx);
	if (ssl == NULL)
		goto fail;
	hs->bev = bufferevent_openssl_socket_new(w->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
	                                         BEV_OPT_CLOSE_ON_FREE);
	if (hs->bev == NULL)
		goto fail; /* libevent frees neither ssl nor fd on failure */
	hs->w = w;
	memcpy(&hs->peer, peer, peer_len < sizeof(hs->peer) ? peer_len : sizeof(hs->peer));
	hs->peer_len = peer_len;
	hs->listener_index = listener_index;
	/* Clients that close without close_notify are common; their data was complete anyway. */
	bufferevent_openssl_set_allow_dirty_shutdown(hs->bev, 1);
	bufferevent_setcb(hs->bev, NULL, NULL, tls_on_event, hs);
	if (ms > 0)
		bufferevent_set_timeouts(hs->bev, &tv, &tv);
	bufferevent_enable(hs->bev, EV_READ | EV_WRITE);
	return 0;
fail:
	SSL_free(ssl);
	free(hs);
	close(fd);
	atomic_fetch_sub(&worker_open_conns, 1);
	return JG_ERR_NOMEM;
}
