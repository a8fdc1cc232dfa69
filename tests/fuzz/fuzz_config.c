/* fuzz_config.c: config_load on arbitrary bytes. The input is written to c.yaml in a private temporary
 * folder (config_load takes a path, and relative JWKS/CA paths resolve against that empty folder).
 * Loading must never crash, hang or leak: errors go to /dev/null, a loaded config is freed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_dir[] = "/tmp/jg-fuzz-config-XXXXXX";
static char fuzz_path[64];
static FILE *fuzz_err;

static void fuzz_cleanup(void)
{
	unlink(fuzz_path);
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
	snprintf(fuzz_path, sizeof(fuzz_path), "%s/c.yaml", fuzz_dir);
	fuzz_err = fopen("/dev/null", "w");
	atexit(fuzz_cleanup);
	return fuzz_err != NULL ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
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
	if (config_load(fuzz_path, fuzz_err, &cfg) == 0) {
		if (cfg == NULL)
			abort(); /* success must hand over a config */
		config_free(cfg);
	} else if (cfg != NULL) {
		abort(); /* failure must not */
	}
	unlink(fuzz_path);
	return 0;
}
