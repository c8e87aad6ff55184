/*
 * The nonewprivs test program (kubernetes' test/images/nonewprivs): installed
 * setuid root, it prints its effective uid, which stays the caller's when the
 * container runs with no_new_privs. Built with `gcc -static`.
 */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
    printf("Effective uid: %d\n", (int)geteuid());
    return 0;
}
