/* pause: PID 1 of every pod sandbox of testbed tier c (the image containerd's sandbox_image
 * names). It holds the pod's namespaces, reaps orphans re-parented to it, and exits at once on
 * SIGTERM/SIGINT so that sandboxes stop without the 10 s kill timeout.
 * Built by testbed/up: gcc -Os -static -o pause pause.c */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void quit(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction term = {.sa_handler = quit};
    struct sigaction child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
    if (getpid() != 1) {
        /* Still works outside a PID namespace, but say so: it is meant to be PID 1. */
        static const char warn[] = "pause: not PID 1; orphans are not reaped here\n";
        (void)!write(2, warn, sizeof warn - 1);
    }
    sigaction(SIGINT, &term, NULL);
    sigaction(SIGTERM, &term, NULL);
    sigaction(SIGCHLD, &child, NULL);
    for (;;) pause();
}
