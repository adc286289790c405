/*
 * ocipy-init (init.c), built static by setup.py, embedded in the spawn
 * extension: the parent copies it into a sealed memfd for every container
 * process (spawn.pyx), so no file on disk is ever executed for it.
 */
#ifndef OCI_INIT_PATH
#error "setup.py defines OCI_INIT_PATH: the ocipy-init binary to embed"
#endif

__asm__(".section .rodata\n"
        ".balign 64\n"
        ".globl oci_init_image\n"
        ".hidden oci_init_image\n"
        "oci_init_image:\n"
        ".incbin \"" OCI_INIT_PATH "\"\n"
        ".globl oci_init_image_end\n"
        ".hidden oci_init_image_end\n"
        "oci_init_image_end:\n"
        ".previous\n");
