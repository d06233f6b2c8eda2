// A model file truncated while it is memory-mapped makes the next read of a lost page raise SIGBUS, which would
// kill the process with no word of why. This handler prints one line naming the cause and the fix, then exits 1.
#include "moe_blas.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

static char message[512];

static int reported;

static void on_sigbus(int sig) {
    (void)sig;
    if (__atomic_exchange_n(&reported, 1, __ATOMIC_SEQ_CST) == 0) {  // several threads may fault at once: one line
        ssize_t r = write(2, message, strlen(message));
        (void)r;
        _exit(1);
    }
    for (;;) pause();
}

void moe_install_mapped_file_guard(const char *text) {
    strncpy(message, text, sizeof message - 2);
    message[sizeof message - 2] = 0;
    size_t n = strlen(message);
    if (n == 0 || message[n - 1] != '\n') { message[n] = '\n'; message[n + 1] = 0; }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigbus;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);
}
