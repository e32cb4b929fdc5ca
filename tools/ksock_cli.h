/* The verbs of the ksock command-line client, one file each. Not installed. */
#ifndef KSOCK_CLI_H
#define KSOCK_CLI_H

/* `ksock token ...`: argv[0] is "token" (tools/ksock_token.c). */
int ksock_token_main(int argc, char **argv);

#endif
