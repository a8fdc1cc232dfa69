#!/bin/sh
# check_self_contained.sh SOURCE_ROOT: fails when the build, the tests or the tools refer to files
# outside the repository (the design documents' folder next to it, or a developer's absolute paths). Tests read only tests/data (tests/data/PROVENANCE), so that tools/run-tests passes on a bare
# clone. Prints each offending line.
set -u
root=${1:?usage: check_self_contained.sh SOURCE_ROOT}
cd "$root" || exit 1
# The patterns are spelled in pieces so that this file does not match itself.
sh_=shared
up=SHARED
w=work
pat="\.\./$sh_|JWTGATE_$up|/$w/|[\"']$sh_[\"']|[\"']\.\.[\"'], *[\"']\.\.[\"'], *[\"']\.\.[\"']"
# Code and data only: bench/results/ records where a measurement ran and the READMEs may say where
# an optional aid lives (ghz); neither is read by a build or a test.
hits=$(grep -rInE --exclude='*.md' --exclude-dir=results "$pat" tests tools .ci bench meson.build meson_options.txt 2>/dev/null)
if [ -n "$hits" ]; then
	echo "files outside the repository are referred to (put test data in tests/data):"
	echo "$hits"
	exit 1
fi
echo "ok: tests, tools and the build refer to nothing outside the repository"
