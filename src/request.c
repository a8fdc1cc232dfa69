/* request.c: to be written */
