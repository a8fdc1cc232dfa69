/* token_main.c: to be written */
