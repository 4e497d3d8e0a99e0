/* <ctype.h>: character classes in the "C" locale (ASCII; bytes >= 0x80 are in no class). */
#ifndef _KRUNC_CTYPE_H
#define _KRUNC_CTYPE_H

#include <bits/krunc.h>

__KRUNC_BEGIN

int isalnum(int c);
int isalpha(int c);
int isblank(int c);
int iscntrl(int c);
int isdigit(int c);
int isgraph(int c);
int islower(int c);
int isprint(int c);
int ispunct(int c);
int isspace(int c);
int isupper(int c);
int isxdigit(int c);
int isascii(int c);
int tolower(int c);
int toupper(int c);
int toascii(int c);

__KRUNC_END

#endif
