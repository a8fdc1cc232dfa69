/* upstream.c: to be written */
