/*
 * libfido2 (the library behind fido2-token, fido2-cred, fido2-assert and pam_u2f) against
 * virtual-fido's raw CTAPHID socket, through libfido2's own I/O hooks
 * (fido_dev_set_io_functions): no kernel, no hidraw. Verification on: fido_cred_verify checks
 * the packed attestation, fido_assert_verify the assertion signature.
 *
 * Usage: check RAW_SOCKET. Prints "ok ..." and exits 0 when every check passed.
 */
#include <fido.h>
#include <fido/es256.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define PIN "4711-keybound"
#define RP "keybound.example"
#define REPORT 64

static void *io_open(const char *path) {
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	strncpy(sa.sun_path, path, sizeof sa.sun_path - 1);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	int *h = malloc(sizeof *h);
	*h = fd;
	return h;
}

static void io_close(void *h) {
	close(*(int *)h);
	free(h);
}

/* One 64-byte IN report. */
static int io_read(void *h, unsigned char *buf, size_t len, int ms) {
	size_t got = 0;
	if (len < REPORT)
		return -1;
	while (got < REPORT) {
		struct pollfd p = {*(int *)h, POLLIN, 0};
		if (poll(&p, 1, ms < 0 ? -1 : ms) <= 0)
			return -1;
		ssize_t n = read(*(int *)h, buf + got, REPORT - got);
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return REPORT;
}

/* libfido2 writes report id 0 first, as for hidraw: the socket gets the 64 bytes after it. */
static int io_write(void *h, const unsigned char *buf, size_t len) {
	if (len == REPORT + 1 && buf[0] == 0) {
		buf++;
		len--;
	}
	if (len != REPORT || write(*(int *)h, buf, REPORT) != REPORT)
		return -1;
	return REPORT + 1;
}

#define CHECK(what, expr)                                                          \
	do {                                                                       \
		int r_ = (expr);                                                   \
		if (r_ != FIDO_OK) {                                               \
			fprintf(stderr, "FAILED: %s: %s (%d)\n", what, fido_strerr(r_), r_); \
			exit(1);                                                   \
		}                                                                  \
	} while (0)

#define REQUIRE(what, cond)                                    \
	do {                                                   \
		if (!(cond)) {                                 \
			fprintf(stderr, "FAILED: %s\n", what); \
			exit(1);                               \
		}                                              \
	} while (0)

static const unsigned char cdh[32] = {0xcd, 1, 2, 3};

/* One assertion with hmac-secret; returns the flags and copies the hmac output. */
static uint8_t assert_once(fido_dev_t *dev, const fido_cred_t *cred, const char *pin,
    fido_opt_t up, const unsigned char *salt, unsigned char out[32], uint32_t *counter) {
	fido_assert_t *a = fido_assert_new();
	CHECK("assert rp", fido_assert_set_rp(a, RP));
	CHECK("assert cdh", fido_assert_set_clientdata_hash(a, cdh, sizeof cdh));
	CHECK("allow cred", fido_assert_allow_cred(a, fido_cred_id_ptr(cred), fido_cred_id_len(cred)));
	CHECK("up", fido_assert_set_up(a, up));
	if (salt) {
		CHECK("ext", fido_assert_set_extensions(a, FIDO_EXT_HMAC_SECRET));
		CHECK("salt", fido_assert_set_hmac_salt(a, salt, 32));
	}
	CHECK("fido_dev_get_assert", fido_dev_get_assert(dev, a, pin));
	REQUIRE("one assertion", fido_assert_count(a) == 1);
	es256_pk_t *pk = es256_pk_new();
	CHECK("pk", es256_pk_from_ptr(pk, fido_cred_pubkey_ptr(cred), fido_cred_pubkey_len(cred)));
	CHECK("fido_assert_verify", fido_assert_verify(a, 0, COSE_ES256, pk));
	es256_pk_free(&pk);
	if (salt) {
		REQUIRE("hmac-secret output", fido_assert_hmac_secret_len(a, 0) == 32);
		memcpy(out, fido_assert_hmac_secret_ptr(a, 0), 32);
	}
	uint8_t flags = fido_assert_flags(a, 0);
	*counter = fido_assert_sigcount(a, 0);
	fido_assert_free(&a);
	return flags;
}

int main(int argc, char **argv) {
	if (argc != 2) {
		fprintf(stderr, "usage: %s RAW_SOCKET\n", argv[0]);
		return 2;
	}
	fido_init(0);
	fido_dev_io_t io = {io_open, io_close, io_read, io_write};
	fido_dev_t *dev = fido_dev_new();
	CHECK("io functions", fido_dev_set_io_functions(dev, &io));
	CHECK("fido_dev_open", fido_dev_open(dev, argv[1]));
	REQUIRE("CTAP2 device", fido_dev_is_fido2(dev));

	fido_cbor_info_t *info = fido_cbor_info_new();
	CHECK("getInfo", fido_dev_get_cbor_info(dev, info));
	int hmac = 0, prot = 0;
	for (size_t i = 0; i < fido_cbor_info_extensions_len(info); i++) {
		hmac |= !strcmp(fido_cbor_info_extensions_ptr(info)[i], "hmac-secret");
		prot |= !strcmp(fido_cbor_info_extensions_ptr(info)[i], "credProtect");
	}
	REQUIRE("extensions advertised", hmac && prot);
	fido_cbor_info_free(&info);

	CHECK("fido_dev_set_pin", fido_dev_set_pin(dev, PIN, NULL));
	int retries = -1;
	CHECK("retries", fido_dev_get_retry_count(dev, &retries));
	REQUIRE("8 retries", retries == 8);

	/* Resident ES256 credential with hmac-secret and credProtect, PIN-verified. */
	fido_cred_t *cred = fido_cred_new();
	const unsigned char user_id[] = "user-0001";
	CHECK("type", fido_cred_set_type(cred, COSE_ES256));
	CHECK("cdh", fido_cred_set_clientdata_hash(cred, cdh, sizeof cdh));
	CHECK("rp", fido_cred_set_rp(cred, RP, "keybound"));
	CHECK("user", fido_cred_set_user(cred, user_id, sizeof user_id - 1, "tech", "Technician", NULL));
	CHECK("ext", fido_cred_set_extensions(cred, FIDO_EXT_HMAC_SECRET | FIDO_EXT_CRED_PROTECT));
	CHECK("prot", fido_cred_set_prot(cred, FIDO_CRED_PROT_UV_OPTIONAL_WITH_ID));
	CHECK("rk", fido_cred_set_rk(cred, FIDO_OPT_TRUE));
	CHECK("fido_dev_make_cred", fido_dev_make_cred(dev, cred, PIN));
	REQUIRE("packed attestation", !strcmp(fido_cred_fmt(cred), "packed"));
	REQUIRE("x5c present", fido_cred_x5c_len(cred) > 0);
	CHECK("fido_cred_verify", fido_cred_verify(cred));
	REQUIRE("credProtect echoed", fido_cred_prot(cred) == FIDO_CRED_PROT_UV_OPTIONAL_WITH_ID);

	unsigned char salt1[32], salt2[32], o1[32], o2[32], o3[32], o4[32];
	memset(salt1, 0x11, sizeof salt1);
	memset(salt2, 0x22, sizeof salt2);
	uint32_t c1, c2, c3, c4;
	uint8_t f = assert_once(dev, cred, PIN, FIDO_OPT_TRUE, salt1, o1, &c1);
	REQUIRE("UP and UV with PIN", (f & 0x05) == 0x05);
	assert_once(dev, cred, PIN, FIDO_OPT_TRUE, salt1, o2, &c2);
	assert_once(dev, cred, PIN, FIDO_OPT_TRUE, salt2, o3, &c3);
	REQUIRE("same salt same output", !memcmp(o1, o2, 32));
	REQUIRE("other salt other output", memcmp(o1, o3, 32) != 0);
	/* Without the PIN (no UV) the hmac-secret output differs. */
	f = assert_once(dev, cred, NULL, FIDO_OPT_TRUE, salt1, o4, &c4);
	REQUIRE("no UV without PIN", (f & 0x04) == 0);
	REQUIRE("UV and non-UV outputs differ", memcmp(o1, o4, 32) != 0);
	REQUIRE("counter increases", c1 < c2 && c2 < c3 && c3 < c4);
	/* pam_u2f's silent probe: up=false, no PIN. */
	f = assert_once(dev, cred, NULL, FIDO_OPT_FALSE, NULL, NULL, &c1);
	REQUIRE("silent probe has no UP", (f & 0x01) == 0);

	/* A wrong PIN costs a retry. */
	fido_assert_t *a = fido_assert_new();
	fido_assert_set_rp(a, RP);
	fido_assert_set_clientdata_hash(a, cdh, sizeof cdh);
	REQUIRE("wrong PIN refused", fido_dev_get_assert(dev, a, "0000-wrong") == FIDO_ERR_PIN_INVALID);
	fido_assert_free(&a);
	CHECK("retries", fido_dev_get_retry_count(dev, &retries));
	REQUIRE("7 retries", retries == 7);

	fido_cred_free(&cred);
	fido_dev_close(dev);
	fido_dev_free(&dev);
	printf("ok libfido2: make_cred+verify, 5 assertions verified, hmac-secret, PIN\n");
	return 0;
}
