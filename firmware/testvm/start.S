/* testvm entry: a PVH ELF, so ember (and QEMU) boot it exactly as they
 * boot Linux's vmlinux. We arrive in 32-bit protected mode with paging off
 * and EBX pointing at the hvm_start_info; we build an identity map of the
 * first 4 GiB, enter long mode and call testvm_main(start_info). */

#define XEN_ELFNOTE_PHYS32_ENTRY 18

	.section .note.pvh, "a"
	.align 4
	.long 4                  /* name size: "Xen\0" */
	.long 4                  /* descriptor size */
	.long XEN_ELFNOTE_PHYS32_ENTRY
	.asciz "Xen"
	.long pvh_start

	.section .boot, "ax"
	.code32
	.globl pvh_start
pvh_start:
	cli
	mov %ebx, %edi                  /* start_info, first C argument later */
	lgdt gdt_desc
	ljmp $0x08, $1f                 /* reload CS from our GDT */
1:	mov $0x10, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov $stack_top, %esp

	/* PML4[0] -> PDPT; PDPT[0..7] -> 8 page directories of 2 MiB pages:
	 * the first 8 GiB, where the virtio-pmem regions of small guests lie too. */
	mov $pdpt, %eax
	or $0x3, %eax
	mov %eax, pml4
	xor %ecx, %ecx
2:	mov %ecx, %eax
	shl $12, %eax
	add $pd, %eax
	or $0x3, %eax
	mov %eax, pdpt(,%ecx,8)
	inc %ecx
	cmp $8, %ecx
	jne 2b
	xor %ecx, %ecx
3:	mov %ecx, %eax
	shl $21, %eax
	or $0x83, %eax                  /* present, writable, 2 MiB */
	mov %eax, pd(,%ecx,8)
	mov %ecx, %eax
	shr $11, %eax                   /* high dword: bits 32+ of the address */
	mov %eax, pd+4(,%ecx,8)
	inc %ecx
	cmp $4096, %ecx
	jne 3b

	mov $pml4, %eax
	mov %eax, %cr3
	mov %cr4, %eax
	or $0x20, %eax                  /* PAE */
	mov %eax, %cr4
	mov $0xc0000080, %ecx           /* EFER */
	rdmsr
	or $0x100, %eax                 /* LME */
	wrmsr
	mov %cr0, %eax
	or $0x80000001, %eax            /* PG | PE */
	mov %eax, %cr0
	ljmp $0x18, $long_mode

	.code64
long_mode:
	mov $0x10, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	xor %eax, %eax
	mov %eax, %fs
	mov %eax, %gs
	mov $stack_top, %rsp
	/* %rdi still holds the start_info address (zero-extended). */
	mov %edi, %edi
	call testvm_main
4:	hlt
	jmp 4b

	.section .rodata
	.align 16
gdt:
	.quad 0
	.quad 0x00cf9a000000ffff        /* 0x08: 32-bit code */
	.quad 0x00cf92000000ffff        /* 0x10: data */
	.quad 0x00af9a000000ffff        /* 0x18: 64-bit code */
gdt_end:
gdt_desc:
	.word gdt_end - gdt - 1
	.long gdt

	.section .bss
	.align 4096
pml4:	.skip 4096
pdpt:	.skip 4096
pd:	.skip 4096 * 8
	.align 16
stack:	.skip 16384
stack_top:

/* Exception entry stubs: push a zero error code where the CPU pushes
 * none, then the vector, save the GPRs and call testvm_exception(frame).
 * If it returns, resume the interrupted code. */
	.text
	.code64
.macro STUB vec
	.align 16
	.if (\vec == 8) || (\vec >= 10 && \vec <= 14) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
	.else
	push $0
	.endif
	push $\vec
	jmp exception_common
.endm

	.globl exception_stubs
	.align 16
exception_stubs:
	.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	STUB \v
	.endr

exception_common:
	push %rax
	push %rbx
	push %rcx
	push %rdx
	push %rsi
	push %rdi
	push %rbp
	push %r8
	push %r9
	push %r10
	push %r11
	push %r12
	push %r13
	push %r14
	push %r15
	mov %rsp, %rdi
	call testvm_exception
	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %r11
	pop %r10
	pop %r9
	pop %r8
	pop %rbp
	pop %rdi
	pop %rsi
	pop %rdx
	pop %rcx
	pop %rbx
	pop %rax
	add $16, %rsp                   /* vector and error code */
	iretq
