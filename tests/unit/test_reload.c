/* test_reload.c: the pure parts of reload.c: the one list of changes only a restart applies (each
 * named, all reported), and the status the admin endpoint reads (generation, counters, last outcome
 * and reason). Snapshots, TLS contexts and the inotify watch are proven end to end in
 * tests/e2e/test_reload.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../src/reload.c" /* statics: reload_check_restart_only, reload_status_record */

static struct config *load(const char *text)
{
	char path[] = "/tmp/jwtgate-test-reload-XXXXXX";
	int fd = mkstemp(path);
	struct config *cfg = NULL;

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	assert_int_equal(config_load(path, stderr, &cfg), 0);
	unlink(path);
	return cfg;
}

#define BASE                                                                                                 \
	"backends: [{name: b, endpoints: [{ip: {address: 127.0.0.1, port: 9}}]}]\n"                          \
	"httpRoutes: [{name: r, rules: [{backendRefs: [{name: b}]}]}]\n"

/* Runs the check and returns what it wrote; *n gets its count. */
static char *restart_only(const struct config *a, const struct config *b, int *n)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	assert_non_null(f);
	*n = reload_check_restart_only(a, b, f);
	fclose(f);
	return text;
}

static void test_same_file_needs_no_restart(void **state)
{
	const char *t = "workers: 2\nlisteners: [{name: http, address: 127.0.0.1:8080}]\n" BASE;
	struct config *a = load(t), *b = load(t);
	char *out;
	int n;

	(void)state;
	out = restart_only(a, b, &n);
	assert_int_equal(n, 0);
	assert_string_equal(out, "");
	free(out);
	config_free(a);
	config_free(b);
}

static void test_every_restart_only_change_is_named(void **state)
{
	struct config *a = load("workers: 2\nlisteners: [{name: http, address: 127.0.0.1:8080}, "
	                        "{name: old, address: 127.0.0.1:8081}]\n" BASE);
	struct config *b = load("workers: 4\nlimits: {listenBacklog: 128}\naccessLog: {path: stdout}\n"
	                        "listeners: [{name: http, address: 127.0.0.1:9090}, "
	                        "{name: new, address: 127.0.0.1:8082}]\n" BASE);
	char *out;
	int n;

	(void)state;
	out = restart_only(a, b, &n);
	assert_int_equal(n, 6);
	assert_non_null(strstr(out, "workers: 2 -> 4 needs a restart; running configuration kept\n"));
	assert_non_null(strstr(out, "limits.listenBacklog: 4096 -> 128 needs a restart"));
	assert_non_null(strstr(out, "accessLog.path: (none) -> stdout needs a restart"));
	assert_non_null(
	        strstr(out, "listener http: address 127.0.0.1:8080 -> 127.0.0.1:9090 needs a restart"));
	assert_non_null(strstr(out, "listener new (127.0.0.1:8082) added: needs a restart"));
	assert_non_null(strstr(out, "listener old (127.0.0.1:8081) removed: needs a restart"));
	free(out);
	config_free(a);
	config_free(b);
}

static void test_status_counts_and_keeps_the_last_reason(void **state)
{
	struct reload_status s;

	(void)state;
	reload_status_record(RELOAD_OUTCOME_REFUSED, "SIGHUP", "x.yaml:1:1: broken", 1, false);
	reload_status_get(&s);
	assert_int_equal(s.last_outcome, RELOAD_OUTCOME_REFUSED);
	assert_string_equal(reload_outcome_str(s.last_outcome), "refused");
	assert_string_equal(s.last_reason, "x.yaml:1:1: broken");
	assert_string_equal(s.last_trigger, "SIGHUP");
	assert_true(s.last_attempt_ms > 0);
	assert_int_equal(s.n_refused, 1);
	assert_int_equal(s.n_ok, 0);
	reload_status_record(RELOAD_OUTCOME_OK, "watch", NULL, 2, true);
	reload_status_get(&s);
	assert_int_equal(s.generation, 2);
	assert_int_equal(s.n_ok, 1);
	assert_int_equal(s.n_refused, 1);
	assert_string_equal(s.last_reason, "");
	assert_true(s.is_watching);
	assert_string_equal(reload_outcome_str(s.last_outcome), "ok");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_same_file_needs_no_restart),
	        cmocka_unit_test(test_every_restart_only_change_is_named),
	        cmocka_unit_test(test_status_counts_and_keeps_the_last_reason),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
