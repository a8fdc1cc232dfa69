/* jwt-t.h: types shared by the JWT and JWK modules: the verification status (numbered exactly as
 * google/jwt_verify_lib's enum, reference/jwt-behaviour.md "Status messages") and the JWS algorithms
 * jwtgate supports. Types only; functions are in jwt.h and jwk.h. */
#ifndef JWTGATE_JWT_T_H
#define JWTGATE_JWT_T_H

/* Numbers are part of the interface (logged, exposed to auth decisions): never renumber. */
enum jwt_status {
	JWT_STATUS_OK = 0,                                       /* Ok */
	JWT_STATUS_MISSED = 1,                                   /* JwtMissed */
	JWT_STATUS_NOT_YET_VALID = 2,                            /* JwtNotYetValid */
	JWT_STATUS_EXPIRED = 3,                                  /* JwtExpired */
	JWT_STATUS_BAD_FORMAT = 4,                               /* JwtBadFormat */
	JWT_STATUS_HEADER_PARSE_ERROR_BAD_BASE64 = 5,            /* JwtHeaderParseErrorBadBase64 */
	JWT_STATUS_HEADER_PARSE_ERROR_BAD_JSON = 6,              /* JwtHeaderParseErrorBadJson */
	JWT_STATUS_HEADER_BAD_ALG = 7,                           /* JwtHeaderBadAlg */
	JWT_STATUS_HEADER_NOT_IMPLEMENTED_ALG = 8,               /* JwtHeaderNotImplementedAlg */
	JWT_STATUS_HEADER_BAD_KID = 9,                           /* JwtHeaderBadKid */
	JWT_STATUS_PAYLOAD_PARSE_ERROR_BAD_BASE64 = 10,          /* JwtPayloadParseErrorBadBase64 */
	JWT_STATUS_PAYLOAD_PARSE_ERROR_BAD_JSON = 11,            /* JwtPayloadParseErrorBadJson */
	JWT_STATUS_PAYLOAD_PARSE_ERROR_ISS_NOT_STRING = 12,      /* JwtPayloadParseErrorIssNotString */
	JWT_STATUS_PAYLOAD_PARSE_ERROR_SUB_NOT_STRING = 13,      /* JwtPayloadParseErrorSubNotString */
	JWT_STATUS_PAYLOAD_PARSE_ERROR_IAT_NOT_INTEGER = 14,     /* JwtPayloadParseErrorIatNotInteger */
	JWT_STATUS_PAYLOAD_PARSE_ERROR_IAT_OUT_OF_RANGE = 15,    /* JwtPayloadParseErrorIatOutOfRange */
	JWT_STATUS_PAYLOAD_PARSE_ERROR_NBF_NOT_INTEGER = 16,     /* JwtPayloadParseErrorNbfNotInteger */
	JWT_STATUS_PAYLOAD_PARSE_ERROR_NBF_OUT_OF_RANGE = 17,    /* JwtPayloadParseErrorNbfOutOfRange */
	JWT_STATUS_PAYLOAD_PARSE_ERROR_EXP_NOT_INTEGER = 18,     /* JwtPayloadParseErrorExpNotInteger */
	JWT_STATUS_PAYLOAD_PARSE_ERROR_EXP_OUT_OF_RANGE = 19,    /* JwtPayloadParseErrorExpOutOfRange */
	JWT_STATUS_PAYLOAD_PARSE_ERROR_JTI_NOT_STRING = 20,      /* JwtPayloadParseErrorJtiNotString */
	JWT_STATUS_PAYLOAD_PARSE_ERROR_AUD_NOT_STRING = 21,      /* JwtPayloadParseErrorAudNotString */
	JWT_STATUS_SIGNATURE_PARSE_ERROR_BAD_BASE64 = 22,        /* JwtSignatureParseErrorBadBase64 */
	JWT_STATUS_ED25519_SIGNATURE_WRONG_LENGTH = 23,          /* JwtEd25519SignatureWrongLength */
	JWT_STATUS_UNKNOWN_ISSUER = 24,                          /* JwtUnknownIssuer */
	JWT_STATUS_AUDIENCE_NOT_ALLOWED = 25,                    /* JwtAudienceNotAllowed */
	JWT_STATUS_VERIFICATION_FAIL = 26,                       /* JwtVerificationFail */
	JWT_STATUS_MULTIPLE_TOKENS = 27,                         /* JwtMultipleTokens */
	JWT_STATUS_JWKS_PARSE_ERROR = 28,                        /* JwksParseError */
	JWT_STATUS_JWKS_NO_KEYS = 29,                            /* JwksNoKeys */
	JWT_STATUS_JWKS_BAD_KEYS = 30,                           /* JwksBadKeys */
	JWT_STATUS_JWKS_NO_VALID_KEYS = 31,                      /* JwksNoValidKeys */
	JWT_STATUS_JWKS_KID_ALG_MISMATCH = 32,                   /* JwksKidAlgMismatch */
	JWT_STATUS_JWKS_RSA_PARSE_ERROR = 33,                    /* JwksRsaParseError */
	JWT_STATUS_JWKS_EC_CREATE_KEY_FAIL = 34,                 /* JwksEcCreateKeyFail */
	JWT_STATUS_JWKS_EC_XOR_Y_BAD_BASE64 = 35,                /* JwksEcXorYBadBase64 */
	JWT_STATUS_JWKS_EC_PARSE_ERROR = 36,                     /* JwksEcParseError */
	JWT_STATUS_JWKS_OCT_BAD_BASE64 = 37,                     /* JwksOctBadBase64 */
	JWT_STATUS_JWKS_OKP_X_BAD_BASE64 = 38,                   /* JwksOKPXBadBase64 */
	JWT_STATUS_JWKS_OKP_X_WRONG_LENGTH = 39,                 /* JwksOKPXWrongLength */
	JWT_STATUS_JWKS_FETCH_FAIL = 40,                         /* JwksFetchFail */
	JWT_STATUS_JWKS_MISSING_KTY = 41,                        /* JwksMissingKty */
	JWT_STATUS_JWKS_BAD_KTY = 42,                            /* JwksBadKty */
	JWT_STATUS_JWKS_NOT_IMPLEMENTED_KTY = 43,                /* JwksNotImplementedKty */
	JWT_STATUS_JWKS_RSA_KEY_BAD_ALG = 44,                    /* JwksRSAKeyBadAlg */
	JWT_STATUS_JWKS_RSA_KEY_MISSING_N = 45,                  /* JwksRSAKeyMissingN */
	JWT_STATUS_JWKS_RSA_KEY_BAD_N = 46,                      /* JwksRSAKeyBadN */
	JWT_STATUS_JWKS_RSA_KEY_MISSING_E = 47,                  /* JwksRSAKeyMissingE */
	JWT_STATUS_JWKS_RSA_KEY_BAD_E = 48,                      /* JwksRSAKeyBadE */
	JWT_STATUS_JWKS_EC_KEY_BAD_ALG = 49,                     /* JwksECKeyBadAlg */
	JWT_STATUS_JWKS_EC_KEY_BAD_CRV = 50,                     /* JwksECKeyBadCrv */
	JWT_STATUS_JWKS_EC_KEY_ALG_OR_CRV_UNSUPPORTED = 51,      /* JwksECKeyAlgOrCrvUnsupported */
	JWT_STATUS_JWKS_EC_KEY_ALG_NOT_COMPATIBLE_WITH_CRV = 52, /* JwksECKeyAlgNotCompatibleWithCrv */
	JWT_STATUS_JWKS_EC_KEY_MISSING_X = 53,                   /* JwksECKeyMissingX */
	JWT_STATUS_JWKS_EC_KEY_BAD_X = 54,                       /* JwksECKeyBadX */
	JWT_STATUS_JWKS_EC_KEY_MISSING_Y = 55,                   /* JwksECKeyMissingY */
	JWT_STATUS_JWKS_EC_KEY_BAD_Y = 56,                       /* JwksECKeyBadY */
	JWT_STATUS_JWKS_HMAC_KEY_BAD_ALG = 57,                   /* JwksHMACKeyBadAlg */
	JWT_STATUS_JWKS_HMAC_KEY_MISSING_K = 58,                 /* JwksHMACKeyMissingK */
	JWT_STATUS_JWKS_HMAC_KEY_BAD_K = 59,                     /* JwksHMACKeyBadK */
	JWT_STATUS_JWKS_OKP_KEY_BAD_ALG = 60,                    /* JwksOKPKeyBadAlg */
	JWT_STATUS_JWKS_OKP_KEY_MISSING_CRV = 61,                /* JwksOKPKeyMissingCrv */
	JWT_STATUS_JWKS_OKP_KEY_BAD_CRV = 62,                    /* JwksOKPKeyBadCrv */
	JWT_STATUS_JWKS_OKP_KEY_CRV_UNSUPPORTED = 63,            /* JwksOKPKeyCrvUnsupported */
	JWT_STATUS_JWKS_OKP_KEY_MISSING_X = 64,                  /* JwksOKPKeyMissingX */
	JWT_STATUS_JWKS_OKP_KEY_BAD_X = 65,                      /* JwksOKPKeyBadX */
	JWT_STATUS_JWKS_X509_BIO_WRITE_ERROR = 66,               /* JwksX509BioWriteError */
	JWT_STATUS_JWKS_X509_PARSE_ERROR = 67,                   /* JwksX509ParseError */
	JWT_STATUS_JWKS_X509_GET_PUBKEY_ERROR = 68,              /* JwksX509GetPubkeyError */
	JWT_STATUS_JWKS_PEM_NOT_IMPLEMENTED_KTY = 69,            /* JwksPemNotImplementedKty */
	JWT_STATUS_JWKS_PEM_BAD_BASE64 = 70,                     /* JwksPemBadBase64 */
	JWT_STATUS_JWKS_PEM_GET_RAW_ED25519_ERROR = 71,          /* JwksPemGetRawEd25519Error */
	JWT_STATUS_JWKS_BIO_ALLOC_ERROR = 72,
	/* JwksBioAllocError */
};

#define JWT_STATUS_COUNT 73

/* JWS "alg" values accepted (RFC 7518 section 3.1, RFC 8037 section 3.1). JWT_ALG_UNSET = absent. */
enum jwt_alg {
	JWT_ALG_UNSET = 0,
	JWT_ALG_RS256,
	JWT_ALG_RS384,
	JWT_ALG_RS512,
	JWT_ALG_PS256,
	JWT_ALG_PS384,
	JWT_ALG_PS512,
	JWT_ALG_ES256,
	JWT_ALG_ES384,
	JWT_ALG_ES512,
	JWT_ALG_EDDSA,
	JWT_ALG_HS256,
	JWT_ALG_HS384,
	JWT_ALG_HS512,
};

#endif
