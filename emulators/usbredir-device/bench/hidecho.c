/* Guest-side round-trip timer: N x (write 65 bytes, read 64) on /dev/hidraw0, checks the echo,
 * prints min/median/p99/max/mean. Build: aarch64-linux-gnu-gcc -O2 -static -o hidecho hidecho.c */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e3+t.tv_nsec/1e6;}
static int cmp(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;}
int main(int argc,char**argv){
  int n=argc>1?atoi(argv[1]):100; int fd=open("/dev/hidraw0",O_RDWR); if(fd<0){perror("open");return 1;}
  double *ms=malloc(sizeof(double)*n); unsigned char out[65],in[64];
  for(int i=0;i<n;i++){ out[0]=0; for(int j=1;j<65;j++) out[j]=(unsigned char)(i*7+j);
    double t0=now(); if(write(fd,out,65)!=65){perror("write");return 1;}
    if(read(fd,in,64)!=64){perror("read");return 1;} ms[i]=now()-t0;
    if(memcmp(in,out+1,64)){printf("HIDECHO_MISMATCH at %d\n",i);return 1;} }
  qsort(ms,n,sizeof(double),cmp); double s=0; for(int i=0;i<n;i++) s+=ms[i];
  printf("HIDECHO n=%d min=%.3f median=%.3f p99=%.3f max=%.3f mean=%.3f ms\n",n,ms[0],ms[n/2],ms[(int)(n*0.99)],ms[n-1],s/n);
  return 0;}
