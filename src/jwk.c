/* jwk.c: to be written */
