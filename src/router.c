/* router.c: to be written */
