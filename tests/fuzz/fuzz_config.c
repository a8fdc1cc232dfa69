/* fuzz_config.c: config_load on arbitrary bytes. The input is written to c.yaml in a private temporary
 * folder (config_load takes a path, and relative JWKS/CA paths resolve against that empty folder).
 * Loading must never crash, hang or leak: errors go to /dev/null, a loaded config is freed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "fuzz_files.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = {"c.yaml"};
	struct config *cfg = NULL;
	const char *path;

	fuzz_files_init("config", names, 1);
	path = fuzz_files.path[0];
	fuzz_files_write(path, data, size);
	if (config_load(path, fuzz_files.err, &cfg) == 0) {
		if (cfg == NULL)
			abort(); /* success must hand over a config */
		config_free(cfg);
	} else if (cfg != NULL) {
		abort(); /* failure must not */
	}
	unlink(path);
	return 0;
}
