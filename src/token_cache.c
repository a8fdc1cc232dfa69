/* token_cache.c: to be written */
