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
#include "fuzz_files.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = {"m.yaml", "native.yaml"};
	const char *paths[1], *native;
	struct config *cfg = NULL;
	FILE *f;

	fuzz_files_init("manifest", names, 2);
	paths[0] = fuzz_files.path[0];
	native = fuzz_files.path[1];
	fuzz_files_write(paths[0], data, size);
	if (config_load_many(paths, 1, fuzz_files.err, &cfg) != 0) {
		if (cfg != NULL)
			abort(); /* failure must not hand over a config */
		unlink(paths[0]);
		return 0;
	}
	if (cfg == NULL)
		abort(); /* success must */
	config_free(cfg);
	f = fopen(native, "wb");
	if (f == NULL)
		abort();
	if (config_print(paths, 1, f, fuzz_files.err) != 0)
		abort(); /* it loaded a moment ago */
	fclose(f);
	cfg = NULL;
	if (config_load(native, fuzz_files.err, &cfg) != 0 || cfg == NULL)
		abort(); /* --print-config wrote a file the native loader refuses */
	config_free(cfg);
	unlink(native);
	unlink(paths[0]);
	return 0;
}
