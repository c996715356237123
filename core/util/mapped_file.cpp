#include "util/mapped_file.h"

#include "util/error.h"
#include "util/input_integrity.h"
#include "util/memory_budget.h"

#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <mutex>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mla {

std::atomic<bool> g_mappedInputDamaged{false};

namespace {

// Live mappings by start address (path and size), so releasePages only ever touches file-backed memory and
// livePaths can name the inputs in use.
struct Mapping {
    std::size_t size;
    std::filesystem::path path;
    int slot;
};
std::mutex& registryMutex()
{
    static std::mutex m;
    return m;
}
std::map<const std::uint8_t*, Mapping>& registry()
{
    static std::map<const std::uint8_t*, Mapping> r;
    return r;
}

// Closed maps that were damaged and not reported yet.
std::vector<Mapping>& damagedHistory()
{
    static std::vector<Mapping> h;
    return h;
}

// The SIGBUS handler cannot take a lock or allocate, so it reads this fixed table of lock-free slots instead of the
// registry. A slot is claimed by setting `begin` and released by clearing it.
struct Slot {
    std::atomic<std::uintptr_t> begin{0};
    std::atomic<std::size_t> size{0};
    std::atomic<bool> damaged{false};
};
constexpr std::size_t kSlots = 4096;
std::array<Slot, kSlots> g_slots;
std::uintptr_t g_pageSize = 4096;
struct sigaction g_previousSigbus {};

int claimSlot(std::uintptr_t begin, std::size_t size)
{
    for (std::size_t i = 0; i < kSlots; ++i) {
        std::uintptr_t expected = 0;
        // Size first: the handler only looks at a slot whose begin is set.
        if (g_slots[i].begin.load(std::memory_order_relaxed) != 0)
            continue;
        g_slots[i].size.store(size, std::memory_order_relaxed);
        g_slots[i].damaged.store(false, std::memory_order_relaxed);
        if (g_slots[i].begin.compare_exchange_strong(expected, begin, std::memory_order_release))
            return static_cast<int>(i);
    }
    return -1;
}

// An access past the end of a mapped file that shrank: map zero pages over the rest of the mapping (mmap is a plain
// system call, safe here in practice although POSIX does not list it), mark the file damaged and return, so the
// faulting load re-executes and reads zeros. A fault anywhere else goes to the previous handler or kills the
// process as it would have without us.
void onSigbus(int signal, siginfo_t* info, void* context)
{
    const auto address = reinterpret_cast<std::uintptr_t>(info->si_addr);
    for (Slot& slot : g_slots) {
        const std::uintptr_t begin = slot.begin.load(std::memory_order_acquire);
        if (begin == 0)
            continue;
        const std::size_t size = slot.size.load(std::memory_order_relaxed);
        if (address < begin || address >= begin + size)
            continue;
        const std::uintptr_t page = address & ~(g_pageSize - 1);
        const std::uintptr_t end = (begin + size + g_pageSize - 1) & ~(g_pageSize - 1);
        void* p = ::mmap(reinterpret_cast<void*>(page), end - page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        if (p == MAP_FAILED)
            break;
        slot.damaged.store(true, std::memory_order_relaxed);
        g_mappedInputDamaged.store(true, std::memory_order_relaxed);
        return;
    }
    if (g_previousSigbus.sa_flags & SA_SIGINFO) {
        if (g_previousSigbus.sa_sigaction) {
            g_previousSigbus.sa_sigaction(signal, info, context);
            return;
        }
    } else if (g_previousSigbus.sa_handler != SIG_DFL && g_previousSigbus.sa_handler != SIG_IGN) {
        g_previousSigbus.sa_handler(signal);
        return;
    }
    // Default action: restore it and return; the access faults again and ends the process with SIGBUS as before.
    struct sigaction fallback {};
    fallback.sa_handler = SIG_DFL;
    ::sigemptyset(&fallback.sa_mask);
    ::sigaction(SIGBUS, &fallback, nullptr);
}

void installSigbusHandler()
{
    static std::once_flag once;
    std::call_once(once, [] {
        g_pageSize = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
        struct sigaction action {};
        action.sa_sigaction = onSigbus;
        action.sa_flags = SA_SIGINFO | SA_NODEFER;
        ::sigemptyset(&action.sa_mask);
        ::sigaction(SIGBUS, &action, &g_previousSigbus);
    });
}

std::string damageMessage(std::size_t mappedBytes, const std::filesystem::path& path)
{
    std::error_code ec;
    const auto now = std::filesystem::file_size(path, ec);
    return "the file changed while it was in use: it had " + std::to_string(mappedBytes) + " bytes when it was opened"
           + (ec ? std::string(", and now cannot be read") : ", now " + std::to_string(now))
           + "; what was read from it after the change is discarded (do not modify a model while it is open)";
}

} // namespace

void throwIfMappedInputDamaged()
{
    std::lock_guard<std::mutex> lock(registryMutex());
    for (const auto& [begin, m] : registry()) {
        if (m.slot >= 0 && g_slots[static_cast<std::size_t>(m.slot)].damaged.load(std::memory_order_relaxed))
            throw Error(m.path, damageMessage(m.size, m.path));
    }
    // A damaged map that is closed already still made results that may be in use: reported once, then forgotten.
    if (!damagedHistory().empty()) {
        const Mapping m = damagedHistory().back();
        damagedHistory().pop_back();
        if (damagedHistory().empty())
            g_mappedInputDamaged.store(false, std::memory_order_relaxed);
        throw Error(m.path, damageMessage(m.size, m.path));
    }
    g_mappedInputDamaged.store(false, std::memory_order_relaxed);
}

void MappedFile::releasePages(const void* data, std::size_t bytes)
{
    const auto* begin = static_cast<const std::uint8_t*>(data);
    {
        std::lock_guard<std::mutex> lock(registryMutex());
        auto it = registry().upper_bound(begin);
        if (it == registry().begin())
            return;
        --it;
        if (begin + bytes > it->first + it->second.size)
            return;
    }
    const std::uintptr_t page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    const std::uintptr_t first = (reinterpret_cast<std::uintptr_t>(begin) + page - 1) / page * page;
    const std::uintptr_t last = (reinterpret_cast<std::uintptr_t>(begin) + bytes) / page * page;
    if (last > first)
        ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

std::vector<std::filesystem::path> MappedFile::livePaths()
{
    std::vector<std::filesystem::path> paths;
    std::lock_guard<std::mutex> lock(registryMutex());
    for (const auto& [begin, m] : registry())
        paths.push_back(m.path);
    return paths;
}

std::shared_ptr<const MappedFile> MappedFile::open(const std::filesystem::path& path)
{
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait forever for a writer. It has no effect on the
    // regular files that pass the check below.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        throw Error(path, std::string("cannot open: ") + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        const int err = errno;
        ::close(fd);
        throw Error(path, std::string("cannot stat: ") + std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        throw Error(path, S_ISDIR(st.st_mode) ? "is a folder, not a regular file" : "not a regular file (a FIFO, device or socket cannot be read as a model or tokenizer)");
    }
    installSigbusHandler();
    std::shared_ptr<MappedFile> file(new MappedFile());
    file->m_path = path;
    file->m_size = static_cast<std::size_t>(st.st_size);
    if (file->m_size > 0) {
        void* p = ::mmap(nullptr, file->m_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            const int err = errno;
            ::close(fd);
            throw Error(path, std::string("cannot memory-map: ") + std::strerror(err));
        }
        file->m_data = static_cast<const std::uint8_t*>(p);
        file->m_slot = claimSlot(reinterpret_cast<std::uintptr_t>(p), file->m_size);
        std::lock_guard<std::mutex> lock(registryMutex());
        registry()[file->m_data] = {file->m_size, path, file->m_slot};
    }
    ::close(fd);
    return file;
}

bool MappedFile::damaged() const
{
    return m_slot >= 0 && g_slots[static_cast<std::size_t>(m_slot)].damaged.load(std::memory_order_relaxed);
}

void MappedFile::checkIntact() const
{
    if (damaged())
        throw Error(m_path, damageMessage(m_size, m_path));
}

MappedFile::~MappedFile()
{
    if (m_data) {
        {
            std::lock_guard<std::mutex> lock(registryMutex());
            if (damaged())
                damagedHistory().push_back({m_size, m_path, -1});
            registry().erase(m_data);
        }
        if (m_slot >= 0)
            g_slots[static_cast<std::size_t>(m_slot)].begin.store(0, std::memory_order_release);
        ::munmap(const_cast<std::uint8_t*>(m_data), m_size);
    }
}

} // namespace mla
