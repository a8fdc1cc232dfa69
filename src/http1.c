/* http1.c: to be written */
