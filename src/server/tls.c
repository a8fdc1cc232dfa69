/* tls.c: TLS for downstream listeners. A server SSL_CTX per TLS listener is built with each
 * configuration snapshot (start-up and every reload, on the control thread) and shared by the workers;
 * an accepted socket gets an OpenSSL bufferevent on the current snapshot's context, and once the
 * handshake is done ALPN decides which codec owns the connection: "h2" -> http2.c, "http/1.1" or no
 * ALPN -> http1.c. */
#include "server/tls.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "core/common.h"
#include "codec/http1.h"
#include "codec/http2.h"
#include "core/log.h"
#include "server/worker.h"

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

/* ---- session ticket keys ----
 *
 * RFC 8446 section 4.6.1 / RFC 5077: a ticket is the session state sealed under a key only this server
 * knows. OpenSSL draws random ticket keys for every SSL_CTX, and we build a new context at every
 * reload, so on its own each reload would void every ticket. Instead each TLS listener has one key
 * store for the life of the process (listeners change only with a restart): its contexts of every
 * snapshot seal and open tickets through tls_ticket_key_cb with the store's keys, so all workers
 * (threads sharing the context) and all reloads agree. The store rotates: every rotation period a
 * new key seals new tickets and the previous ones still open tickets for their lifetime, so a
 * leaked key exposes a bounded window of sessions (forward secrecy of resumption, RFC 8446 section
 * E.1.4 / RFC 5077 section 5.5).
 *
 * No lock on the handshake path: the control thread builds a new immutable key set and publishes
 * it with one atomic pointer store; a handshake reads the pointer once and the keys in it. A
 * replaced set is kept on the store's retired list for TLS_TICKET_GRACE_S before it is freed, many
 * orders of magnitude longer than a callback holds it (microseconds). */
#define TLS_TICKET_KEYS_MAX   8    /* the sealing key and up to 7 previous ones */
#define TLS_TICKET_LIFETIME_S 7200 /* the lifetime we advertise (OpenSSL's default session timeout) */
#define TLS_TICKET_GRACE_S    60   /* a replaced key set is freed this long after, not sooner */

struct tls_ticket_key {
	unsigned char name[16]; /* sent in clear in the ticket: picks the key (RFC 5077 section 4) */
	unsigned char hmac[32]; /* HMAC-SHA256 over the sealed ticket */
	unsigned char aes[32];  /* AES-256-CBC of the session state */
};

/* Immutable once published; k[0] seals, all of k[0..n) open. */
struct tls_ticket_keys {
	size_t n;
	struct tls_ticket_key k[TLS_TICKET_KEYS_MAX];
	struct tls_ticket_keys *retired_next; /* control thread: the retired list */
	time_t retired_at;
};

struct tls_ticket_store {
	_Atomic(struct tls_ticket_keys *) cur;
	struct tls_ticket_keys *retired; /* newest first; control thread only */
	uint64_t rotation_ms;
	size_t keep;          /* keys in a set: 1 + ceil(lifetime / rotation), at most KEYS_MAX */
	long lifetime_s;      /* the ticket lifetime: TLS_TICKET_LIFETIME_S, or less when keep is capped */
	struct event *rotate; /* on the control base, once tls_tickets_start() ran */
	char *name;           /* the listener's, for log lines */
};

/* One store per listener index; grown and read on the control thread only. */
static struct tls_ticket_store **tls_stores;
static size_t tls_n_stores;
static struct event_base *tls_control_base;
static EVP_CIPHER *tls_ticket_cipher; /* fetched once: no implicit fetch per ticket */
static char tls_ticket_digest[] = "SHA256";

static int tls_ticket_key_new(struct tls_ticket_key *k)
{
	return RAND_bytes(k->name, sizeof(k->name)) == 1 && RAND_priv_bytes(k->hmac, sizeof(k->hmac)) == 1 &&
	                       RAND_priv_bytes(k->aes, sizeof(k->aes)) == 1
	               ? 0
	               : JG_ERR_IO;
}

static void tls_ticket_keys_free(struct tls_ticket_keys *ks)
{
	if (ks == NULL)
		return;
	OPENSSL_cleanse(ks, sizeof(*ks));
	free(ks);
}

/* Frees the retired sets older than the grace period (control thread). */
static void tls_ticket_store_reap(struct tls_ticket_store *st, time_t now)
{
	struct tls_ticket_keys **pp = &st->retired;

	while (*pp != NULL) {
		struct tls_ticket_keys *ks = *pp;

		if (now - ks->retired_at >= TLS_TICKET_GRACE_S) {
			*pp = ks->retired_next;
			tls_ticket_keys_free(ks);
		} else {
			pp = &ks->retired_next;
		}
	}
}

/* A new sealing key in front of the newest keep-1 keys of the current set: a new immutable set,
 * published; the old one retired. Control thread. */
static int tls_ticket_store_rotate(struct tls_ticket_store *st)
{
	struct tls_ticket_keys *old = atomic_load_explicit(&st->cur, memory_order_relaxed);
	struct tls_ticket_keys *ks = calloc(1, sizeof(*ks));
	time_t now = time(NULL);

	if (ks == NULL || tls_ticket_key_new(&ks->k[0]) != 0) {
		free(ks);
		return JG_ERR_NOMEM;
	}
	ks->n = 1;
	if (old != NULL)
		for (size_t i = 0; i < old->n && ks->n < st->keep; i++)
			ks->k[ks->n++] = old->k[i];
	atomic_store_explicit(&st->cur, ks, memory_order_release);
	if (old != NULL) {
		old->retired_at = now;
		old->retired_next = st->retired;
		st->retired = old;
	}
	tls_ticket_store_reap(st, now);
	return 0;
}

static void tls_ticket_on_rotate(evutil_socket_t fd, short what, void *arg)
{
	struct tls_ticket_store *st = arg;

	(void)fd;
	(void)what;
	if (tls_ticket_store_rotate(st) != 0)
		log_warn("listener %s: session ticket key rotation failed; the current key stays", st->name);
	else
		log_debug("listener %s: new session ticket key", st->name);
}

static void tls_ticket_store_arm(struct tls_ticket_store *st)
{
	struct timeval tv = {(time_t)(st->rotation_ms / 1000), (suseconds_t)(st->rotation_ms % 1000) * 1000};

	if (tls_control_base == NULL || st->rotate != NULL)
		return;
	st->rotate = event_new(tls_control_base, -1, EV_PERSIST, tls_ticket_on_rotate, st);
	if (st->rotate == NULL || event_add(st->rotate, &tv) != 0)
		log_warn("listener %s: cannot schedule session ticket key rotation", st->name);
}

/* The store of listener l, made with its first key on first use (control thread, start-up tier). */
static struct tls_ticket_store *tls_ticket_store_get(const struct config_listener *l)
{
	size_t idx = (size_t)l->index;
	struct tls_ticket_store *st;
	uint64_t life_ms = (uint64_t)TLS_TICKET_LIFETIME_S * 1000;

	if (idx < tls_n_stores && tls_stores[idx] != NULL)
		return tls_stores[idx];
	if (tls_ticket_cipher == NULL &&
	    (tls_ticket_cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL)) == NULL)
		return NULL;
	if (idx >= tls_n_stores) {
		struct tls_ticket_store **a = realloc(tls_stores, (idx + 1) * sizeof(*a));

		if (a == NULL)
			return NULL;
		memset(a + tls_n_stores, 0, (idx + 1 - tls_n_stores) * sizeof(*a));
		tls_stores = a;
		tls_n_stores = idx + 1;
	}
	st = calloc(1, sizeof(*st));
	if (st == NULL || (st->name = strdup(l->name)) == NULL) {
		free(st);
		return NULL;
	}
	st->rotation_ms = l->tls_ticket_rotation_ms;
	/* A key seals for one period, then must open its tickets for their whole lifetime. */
	st->keep = 1 + (size_t)((life_ms + st->rotation_ms - 1) / st->rotation_ms);
	st->lifetime_s = TLS_TICKET_LIFETIME_S;
	if (st->keep > TLS_TICKET_KEYS_MAX) {
		st->keep = TLS_TICKET_KEYS_MAX;
		st->lifetime_s = (long)((TLS_TICKET_KEYS_MAX - 1) * st->rotation_ms / 1000);
		if (st->lifetime_s < 1)
			st->lifetime_s = 1;
	}
	if (tls_ticket_store_rotate(st) != 0) {
		free(st->name);
		free(st);
		return NULL;
	}
	tls_stores[idx] = st;
	tls_ticket_store_arm(st);
	return st;
}

/* OpenSSL's ticket key callback (SSL_CTX_set_tlsext_ticket_key_evp_cb). enc = 1: seal a new ticket
 * with the current key. enc = 0: find the key named in a ticket; 0 when none (the ticket is from
 * another server or too old: a full handshake, never a failure), 1 to resume, 2 to resume and issue a
 * new ticket under the current key. -1 on an internal error (the handshake fails). */
static int tls_ticket_key_cb(SSL *ssl, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                             EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
	struct tls_ticket_store *st = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	const struct tls_ticket_keys *ks = atomic_load_explicit(&st->cur, memory_order_acquire);
	const struct tls_ticket_key *k = NULL;
	OSSL_PARAM params[3];
	size_t i;

	if (enc) {
		k = &ks->k[0];
		if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(tls_ticket_cipher)) != 1)
			return -1;
		memcpy(key_name, k->name, sizeof(k->name));
	} else {
		for (i = 0; i < ks->n && k == NULL; i++)
			if (memcmp(key_name, ks->k[i].name, sizeof(ks->k[i].name)) == 0)
				k = &ks->k[i];
		if (k == NULL)
			return 0;
	}
	params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->hmac, sizeof(k->hmac));
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, tls_ticket_digest, 0);
	params[2] = OSSL_PARAM_construct_end();
	if (EVP_MAC_CTX_set_params(hctx, params) != 1 ||
	    EVP_CipherInit_ex(cctx, tls_ticket_cipher, NULL, k->aes, iv, enc) != 1)
		return -1;
	/* TLS 1.3: always a fresh ticket after a resumption, as OpenSSL's own keys do, so that a client
	 * can use each ticket once (RFC 8446 section C.4); TLS 1.2: a new ticket only under a newer key. */
	if (enc || (k == &ks->k[0] && SSL_version(ssl) != TLS1_3_VERSION))
		return 1;
	return 2;
}

void tls_tickets_start(struct event_base *base)
{
	size_t i;

	tls_control_base = base;
	for (i = 0; i < tls_n_stores; i++)
		if (tls_stores[i] != NULL)
			tls_ticket_store_arm(tls_stores[i]);
}

void tls_tickets_stop(void)
{
	size_t i;

	for (i = 0; i < tls_n_stores; i++) {
		struct tls_ticket_store *st = tls_stores[i];

		if (st == NULL)
			continue;
		if (st->rotate != NULL)
			event_free(st->rotate);
		st->rotate = NULL;
	}
	tls_control_base = NULL;
}

void tls_tickets_free(void)
{
	size_t i;

	tls_tickets_stop();
	for (i = 0; i < tls_n_stores; i++) {
		struct tls_ticket_store *st = tls_stores[i];

		if (st == NULL)
			continue;
		tls_ticket_keys_free(atomic_load(&st->cur));
		while (st->retired != NULL) {
			struct tls_ticket_keys *ks = st->retired;

			st->retired = ks->retired_next;
			tls_ticket_keys_free(ks);
		}
		free(st->name);
		free(st);
	}
	free(tls_stores);
	tls_stores = NULL;
	tls_n_stores = 0;
	EVP_CIPHER_free(tls_ticket_cipher);
	tls_ticket_cipher = NULL;
}

/* Installs the inline PEM certificate chain (leaf first, as certificateFile) and private key of l
 * (tls.certificate / tls.privateKey, e.g. from a Kubernetes TLS Secret). Returns 0 or -1 after a
 * message. */
static int tls_use_inline(SSL_CTX *ctx, const struct config_listener *l, FILE *err)
{
	BIO *bio = BIO_new_mem_buf(l->tls_cert_pem, -1);
	X509 *x = NULL;
	EVP_PKEY *key = NULL;
	int rc = -1;

	if (bio == NULL)
		goto out;
	x = PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL);
	if (x == NULL || SSL_CTX_use_certificate(ctx, x) != 1) {
		fprintf(err, "jwtgate: listener %s: tls.certificate: no usable PEM certificate\n", l->name);
		goto out;
	}
	for (;;) {
		X509 *ca = PEM_read_bio_X509(bio, NULL, NULL, NULL);
		unsigned long e;

		if (ca == NULL) {
			/* Only the end of the text ends the chain: a certificate that does not parse would
			 * otherwise cut it short without a word. */
			e = ERR_peek_last_error();
			if (ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE) {
				fprintf(err, "jwtgate: listener %s: tls.certificate: bad chain certificate\n",
				        l->name);
				goto out;
			}
			break;
		}
		if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
			X509_free(ca);
			fprintf(err, "jwtgate: listener %s: tls.certificate: bad chain certificate\n",
			        l->name);
			goto out;
		}
	}
	ERR_clear_error(); /* the end of the PEM text */
	BIO_free(bio);
	bio = BIO_new_mem_buf(l->tls_key_pem, -1);
	if (bio == NULL)
		goto out;
	key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	if (key == NULL || SSL_CTX_use_PrivateKey(ctx, key) != 1) {
		fprintf(err, "jwtgate: listener %s: tls.privateKey: no usable PEM private key\n", l->name);
		goto out;
	}
	rc = 0;
out:
	EVP_PKEY_free(key);
	X509_free(x);
	BIO_free(bio);
	return rc;
}

struct ssl_ctx_st *tls_server_ctx_new(const struct config_listener *l, FILE *err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	struct tls_ticket_store *st;

	if (ctx == NULL) {
		fprintf(err, "jwtgate: listener %s: cannot create a TLS context\n", l->name);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* RFC 9113 section 9.2.2: no renegotiation under HTTP/2; compression is off by default. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (l->tls_cert_pem != NULL) {
		if (tls_use_inline(ctx, l, err) != 0)
			goto fail;
	} else if (SSL_CTX_use_certificate_chain_file(ctx, l->tls_cert_file) != 1) {
		fprintf(err, "jwtgate: listener %s: certificateFile %s: %s\n", l->name, l->tls_cert_file,
		        ERR_reason_error_string(ERR_get_error()));
		goto fail;
	} else if (SSL_CTX_use_PrivateKey_file(ctx, l->tls_key_file, SSL_FILETYPE_PEM) != 1) {
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
	/* Session tickets with the listener's shared, rotating keys (above): every context of the
	 * listener uses the same store, so resumption survives a reload. */
	st = tls_ticket_store_get(l);
	if (st == NULL) {
		fprintf(err, "jwtgate: listener %s: cannot set up session ticket keys\n", l->name);
		goto fail;
	}
	SSL_CTX_set_app_data(ctx, st);
	/* One ticket per full handshake, not OpenSSL's two: each costs a session copy, its encryption
	 * and a record (a write) on every new connection, and a returning client gets a fresh ticket
	 * with every resumption anyway (tls_ticket_key_cb), so one is enough to resume again. */
	SSL_CTX_set_num_tickets(ctx, 1);
	/* Tickets resume TLS 1.2 and 1.3 alike; OpenSSL's server-side session cache would add, for every
	 * TLS 1.2 full handshake, a session (up to 20480 of them) under a lock all workers share. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_timeout(ctx, st->lifetime_s);
	if (SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, tls_ticket_key_cb) != 1) {
		fprintf(err, "jwtgate: listener %s: cannot install the session ticket callback\n", l->name);
		goto fail;
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
