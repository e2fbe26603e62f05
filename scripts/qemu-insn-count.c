/*
 * A QEMU TCG plugin that counts the guest instructions a program executes, and prints the
 * count when it exits. It measures the encoder's kernels for a CPU that is not at hand
 * (arm64's `sdot` kernel against the portable one, and against x86-64's AVX2), where
 * emulated time says nothing. See docs/benchmarks.md, "Sentence encoder: speed".
 *
 *   gcc -O2 -shared -fPIC scripts/qemu-insn-count.c -o libinsn.so
 *   qemu-aarch64 -cpu neoverse-n1 -plugin ./libinsn.so -d plugin \
 *       -L SYSROOT BENCH QUERIES.txt 0 neon-dotprod
 *
 * (SYSROOT: the arm64 C library's root, from Debian's `libc6-arm64-cross`; BENCH: the
 * encoder's bench example built for aarch64-unknown-linux-gnu.)
 *
 * QEMU's plugin header is not in Debian's binary packages, so the few declarations used are
 * written out here, as in the `qemu-plugin.h` of QEMU 7.2 (Debian 12's `qemu-user`, plugin
 * API version 1). Later QEMU versions changed this API; build against their header there.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
/* enum qemu_plugin_op */
#define QEMU_PLUGIN_INLINE_ADD_U64 0

void qemu_plugin_register_vcpu_tb_trans_cb(
    qemu_plugin_id_t id, void (*cb)(qemu_plugin_id_t, struct qemu_plugin_tb *));
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, int op, void *ptr,
                                              uint64_t imm);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id,
                                    void (*cb)(qemu_plugin_id_t, void *), void *userdata);
void qemu_plugin_outs(const char *string);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

/* The programs measured run one thread, so one plain counter is exact. */
static uint64_t executed;

/* Each translated block adds its length to the counter every time it runs. */
static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed,
                                             qemu_plugin_tb_n_insns(tb));
}

static void report(qemu_plugin_id_t id, void *userdata) {
    (void)id;
    (void)userdata;
    char line[64];
    snprintf(line, sizeof line, "instructions: %llu\n", (unsigned long long)executed);
    qemu_plugin_outs(line);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id,
                                                               const void *info, int argc,
                                                               char **argv) {
    (void)info;
    (void)argc;
    (void)argv;
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, report, NULL);
    return 0;
}
