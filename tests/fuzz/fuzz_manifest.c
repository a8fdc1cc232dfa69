/* fuzz_manifest.c: Kubernetes manifest streams (jwtgate.yaml(5) MANIFESTS) on arbitrary bytes. The input
 * is written to m.yaml in a private temporary folder and loaded with config_load_many, as `jwtgate -c
 * m.yaml` does. Loading must never crash, hang or leak; a stream that loads must also print
 * (--print-config) to a native file that loads again: the translation and the native loader agree. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_dir[] = "/tmp/jg-fuzz-manifest-XXXXXX";
static char fuzz_path[64], fuzz_native[64];
static FILE *fuzz_err;

static void fuzz_cleanup(void)
{
	unlink(fuzz_path);
	unlink(fuzz_native);
	rmdir(fuzz_dir);
	if (fuzz_err != NULL)
		fclose(fuzz_err);
}

/* Creates the folder and the error sink once per process. Returns 0 or -1. */
static int fuzz_init(void)
{
	if (fuzz_err != NULL)
		return 0;
	if (mkdtemp(fuzz_dir) == NULL)
		return -1;
	snprintf(fuzz_path, sizeof(fuzz_path), "%s/m.yaml", fuzz_dir);
	snprintf(fuzz_native, sizeof(fuzz_native), "%s/native.yaml", fuzz_dir);
	fuzz_err = fopen("/dev/null", "w");
	atexit(fuzz_cleanup);
	return fuzz_err != NULL ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *paths[1] = {fuzz_path};
	struct config *cfg = NULL;
	FILE *f;

	if (fuzz_init() != 0)
		abort();
	f = fopen(fuzz_path, "wb");
	if (f == NULL)
		abort();
	if (size > 0 && fwrite(data, 1, size, f) != size)
		abort();
	fclose(f);
	if (config_load_many(paths, 1, fuzz_err, &cfg) != 0) {
		if (cfg != NULL)
			abort(); /* failure must not hand over a config */
		unlink(fuzz_path);
		return 0;
	}
	if (cfg == NULL)
		abort(); /* success must */
	config_free(cfg);
	f = fopen(fuzz_native, "wb");
	if (f == NULL)
		abort();
	if (config_print(paths, 1, f, fuzz_err) != 0)
		abort(); /* it loaded a moment ago */
	fclose(f);
	cfg = NULL;
	if (config_load(fuzz_native, fuzz_err, &cfg) != 0 || cfg == NULL)
		abort(); /* --print-config wrote a file the native loader refuses */
	config_free(cfg);
	unlink(fuzz_native);
	unlink(fuzz_path);
	return 0;
}
