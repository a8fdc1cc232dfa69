/* fuzz_files.h: the private temporary folder of a fuzz target whose code under test takes file
 * paths (config_load and friends): up to FUZZ_FILES_MAX files in one mkdtemp folder, an error
 * sink on /dev/null, all removed at exit. Static and single-instance: include it once, in the
 * target's translation unit. */
#ifndef JWTGATE_TESTS_FUZZ_FILES_H
#define JWTGATE_TESTS_FUZZ_FILES_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define FUZZ_FILES_MAX 2

static struct {
	char dir[64];
	char path[FUZZ_FILES_MAX][96];
	size_t n;
	FILE *err;
} fuzz_files;

static void fuzz_files_cleanup(void)
{
	size_t i;

	for (i = 0; i < fuzz_files.n; i++)
		unlink(fuzz_files.path[i]);
	rmdir(fuzz_files.dir);
	if (fuzz_files.err != NULL)
		fclose(fuzz_files.err);
}

/* Once per process: the folder /tmp/jg-fuzz-<tag>-XXXXXX, the paths of the n names in it
 * (fuzz_files.path[i]) and the error sink. Aborts when any of it cannot be had. */
static void fuzz_files_init(const char *tag, const char *const *names, size_t n)
{
	size_t i;

	if (fuzz_files.err != NULL)
		return;
	if (n > FUZZ_FILES_MAX)
		abort();
	snprintf(fuzz_files.dir, sizeof(fuzz_files.dir), "/tmp/jg-fuzz-%s-XXXXXX", tag);
	if (mkdtemp(fuzz_files.dir) == NULL)
		abort();
	for (i = 0; i < n; i++)
		snprintf(fuzz_files.path[i], sizeof(fuzz_files.path[i]), "%s/%s", fuzz_files.dir, names[i]);
	fuzz_files.n = n;
	fuzz_files.err = fopen("/dev/null", "w");
	if (fuzz_files.err == NULL)
		abort();
	atexit(fuzz_files_cleanup);
}

/* Writes the fuzz input to path (replacing it). */
static void fuzz_files_write(const char *path, const uint8_t *data, size_t size)
{
	FILE *f = fopen(path, "wb");

	if (f == NULL)
		abort();
	if (size > 0 && fwrite(data, 1, size, f) != size)
		abort();
	fclose(f);
}

#endif
