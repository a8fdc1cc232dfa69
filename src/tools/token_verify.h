/* token_verify.h: the "inspect" and "verify" subcommands of jwtgate-token.
 *
 * They live apart from token_main.c because they use the proxy's own JWT code (jwt/jwt.h, jwt/jwk.h),
 * whose names (struct jwt, JWT_ALG_*) are also libjwt's, which minting uses: the two never meet in one
 * translation unit. */
#ifndef JWTGATE_TOKEN_VERIFY_H
#define JWTGATE_TOKEN_VERIFY_H

/* `jwtgate-token inspect [TOKEN|-]`: argv[0] is "inspect". Returns the exit status: 0 decoded (not
 * verified), 1 the proxy would refuse to parse the token, 2 bad usage. */
int token_inspect_main(int argc, char **argv);

/* `jwtgate-token verify --jwks FILE|URL [...] [TOKEN|-]`: argv[0] is "verify". Returns the exit
 * status: 0 every token verified, 1 a token was denied, 2 bad usage or an unusable JWKS file. */
int token_verify_main(int argc, char **argv);

#endif
