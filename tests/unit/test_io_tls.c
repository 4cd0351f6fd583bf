/*
 * test_io_tls -- TLS streams that libevent cannot make (out of memory): the
 * SSL handed over is freed exactly once and the socket closed exactly once
 * (event/pt_io.c, bev_failed).  libevent's allocator is replaced so that
 * its allocations fail on demand; an SSL's ex_data free callback counts
 * when the SSL really goes (each test holds one reference of its own).
 */
#include "event/pt_io.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

static bool fail_alloc; /* libevent's allocations fail while set */

static void *t_malloc(size_t n)
{
    return fail_alloc ? NULL : malloc(n);
}

static void *t_realloc(void *p, size_t n)
{
    return fail_alloc ? NULL : realloc(p, n);
}

static void t_free(void *p)
{
    free(p);
}

static int ex_index = -1;
static int ssl_frees; /* SSLs really freed (the last reference went) */

static void on_ssl_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent, (void)ptr, (void)ad, (void)idx, (void)argl, (void)argp;
    ssl_frees++;
}

static void no_cb(struct pt_io *io, int what, void *arg)
{
    (void)io, (void)what, (void)arg;
}

struct fixture {
    struct event_base *base;
    SSL_CTX *ctx;
    int lfd;
    struct sockaddr_in sa;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    f->base = event_base_new();
    f->ctx = SSL_CTX_new(TLS_client_method());
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    f->sa.sin_family = AF_INET;
    f->sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(f->sa);
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&f->sa, sizeof(f->sa)), 0);
    assert_int_equal(listen(f->lfd, 4), 0);
    assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&f->sa, &len), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    close(f->lfd);
    SSL_CTX_free(f->ctx);
    event_base_free(f->base);
    free(f);
    return 0;
}

/* an SSL with two references: the one handed over, and the test's own */
static SSL *held_ssl(struct fixture *f)
{
    SSL *ssl = SSL_new(f->ctx);
    assert_non_null(ssl);
    SSL_set_ex_data(ssl, ex_index, f);
    assert_int_equal(SSL_up_ref(ssl), 1);
    ssl_frees = 0;
    return ssl;
}

static void test_tls_connect_out_of_memory(void **state)
{
    struct fixture *f = *state;
    SSL *ssl = held_ssl(f);
    fail_alloc = true;
    struct pt_io *io = pt_io_tls_connect(f->base, (struct sockaddr *)&f->sa, sizeof(f->sa), ssl, no_cb, NULL);
    fail_alloc = false;
    assert_null(io);
    assert_int_equal(ssl_frees, 0); /* the handed-over reference went, the test's is left */
    SSL_free(ssl);
    assert_int_equal(ssl_frees, 1);
}

static void test_tls_over_out_of_memory(void **state)
{
    struct fixture *f = *state;
    struct pt_io *plain = pt_io_connect(f->base, (struct sockaddr *)&f->sa, sizeof(f->sa), no_cb, NULL);
    assert_non_null(plain);
    int fd = pt_io_fd(plain);
    assert_true(fd >= 0);
    SSL *ssl = held_ssl(f);
    fail_alloc = true;
    struct pt_io *io = pt_io_tls_over(plain, ssl, no_cb, NULL);
    fail_alloc = false;
    assert_null(io);
    assert_int_equal(ssl_frees, 0);
    SSL_free(ssl);
    assert_int_equal(ssl_frees, 1);
    /* the socket was closed (once: nothing else holds this number now) */
    assert_int_equal(fcntl(fd, F_GETFD), -1);
    assert_int_equal(errno, EBADF);
}

int main(void)
{
    /* before libevent allocates anything */
    event_set_mem_functions(t_malloc, t_realloc, t_free);
    ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, on_ssl_free);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tls_connect_out_of_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_over_out_of_memory, setup, teardown),
    };
    return cmocka_run_group_tests_name("io_tls", tests, NULL, NULL);
}
