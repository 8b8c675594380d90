// Package uaclass reduces a User-Agent header to three small classes —
// browser family, operating system family and device class — and detects
// bots, crawlers, HTTP libraries and headless or automated browsers.
//
// The classes are uint8 values that are stable on the wire and in
// ClickHouse: never renumber them, only append. Parsing uses
// github.com/medama-io/go-useragent; crawler and automation detection is
// this package's own substring list (see Classify). Results are cached in
// a fixed-size table, so classifying a user agent seen recently does not
// allocate.
package uaclass

import (
	"github.com/medama-io/go-useragent/agents"
)

// Browser is a browser family.
type Browser uint8

// Browser families. Values are stable: never renumber.
const (
	BrowserUnknown   Browser = 0
	BrowserChrome    Browser = 1
	BrowserEdge      Browser = 2
	BrowserFirefox   Browser = 3
	BrowserSafari    Browser = 4
	BrowserOpera     Browser = 5
	BrowserOperaMini Browser = 6
	BrowserSamsung   Browser = 7
	BrowserIE        Browser = 8
	BrowserVivaldi   Browser = 9
	BrowserYandex    Browser = 10
	BrowserSilk      Browser = 11
	BrowserAndroid   Browser = 12 // the old stock Android browser
	BrowserFalkon    Browser = 13
	BrowserNintendo  Browser = 14
	BrowserHuawei    Browser = 15
)

var browserNames = [...]string{
	"unknown", "chrome", "edge", "firefox", "safari", "opera", "opera_mini", "samsung",
	"ie", "vivaldi", "yandex", "silk", "android", "falkon", "nintendo", "huawei",
}

// String returns the lowercase name used in reports, "unknown" for values
// this build does not know.
func (b Browser) String() string {
	if int(b) < len(browserNames) {
		return browserNames[b]
	}
	return "unknown"
}

// OS is an operating system family.
type OS uint8

// Operating system families. Values are stable: never renumber.
const (
	OSUnknown  OS = 0
	OSWindows  OS = 1
	OSMacOS    OS = 2
	OSIOS      OS = 3
	OSAndroid  OS = 4
	OSLinux    OS = 5
	OSChromeOS OS = 6
	OSFreeBSD  OS = 7
	OSOpenBSD  OS = 8
)

var osNames = [...]string{"unknown", "windows", "macos", "ios", "android", "linux", "chromeos", "freebsd", "openbsd"}

// String returns the lowercase name used in reports.
func (o OS) String() string {
	if int(o) < len(osNames) {
		return osNames[o]
	}
	return "unknown"
}

// Device is a device class.
type Device uint8

// Device classes. Values are stable: never renumber.
const (
	DeviceUnknown Device = 0
	DeviceDesktop Device = 1
	DeviceMobile  Device = 2
	DeviceTablet  Device = 3
	DeviceTV      Device = 4
	// DeviceBot is any client that is not a person's browser: crawlers,
	// link previewers, monitors, HTTP libraries, headless and automated
	// browsers.
	DeviceBot Device = 5
)

var deviceNames = [...]string{"unknown", "desktop", "mobile", "tablet", "tv", "bot"}

// String returns the lowercase name used in reports.
func (d Device) String() string {
	if int(d) < len(deviceNames) {
		return deviceNames[d]
	}
	return "unknown"
}

// Class is the reduced form of a user agent. For a bot, Browser and OS
// still describe what the user agent claims (Googlebot's smartphone
// crawler is Chrome on Android); Device is DeviceBot.
type Class struct {
	Browser Browser
	OS      OS
	Device  Device
}

// String returns "browser/os/device", for logs and tests.
func (c Class) String() string {
	return c.Browser.String() + "/" + c.OS.String() + "/" + c.Device.String()
}

// IsBot reports whether c is a bot.
func (c Class) IsBot() bool { return c.Device == DeviceBot }

func fromAgents(b agents.Browser, o agents.OS, d agents.Device) Class {
	var c Class
	switch b {
	case agents.BrowserChrome:
		c.Browser = BrowserChrome
	case agents.BrowserEdge:
		c.Browser = BrowserEdge
	case agents.BrowserFirefox:
		c.Browser = BrowserFirefox
	case agents.BrowserSafari:
		c.Browser = BrowserSafari
	case agents.BrowserOpera:
		c.Browser = BrowserOpera
	case agents.BrowserOperaMini:
		c.Browser = BrowserOperaMini
	case agents.BrowserSamsung:
		c.Browser = BrowserSamsung
	case agents.BrowserIE:
		c.Browser = BrowserIE
	case agents.BrowserVivaldi:
		c.Browser = BrowserVivaldi
	case agents.BrowserYandex:
		c.Browser = BrowserYandex
	case agents.BrowserSilk:
		c.Browser = BrowserSilk
	case agents.BrowserAndroid:
		c.Browser = BrowserAndroid
	case agents.BrowserFalkon:
		c.Browser = BrowserFalkon
	case agents.BrowserNintendo:
		c.Browser = BrowserNintendo
	case agents.BrowserHuawei:
		c.Browser = BrowserHuawei
	}
	switch o {
	case agents.OSWindows:
		c.OS = OSWindows
	case agents.OSMacOS:
		c.OS = OSMacOS
	case agents.OSIOS:
		c.OS = OSIOS
	case agents.OSAndroid:
		c.OS = OSAndroid
	case agents.OSLinux:
		c.OS = OSLinux
	case agents.OSChromeOS:
		c.OS = OSChromeOS
	case agents.OSFreeBSD:
		c.OS = OSFreeBSD
	case agents.OSOpenBSD:
		c.OS = OSOpenBSD
	}
	switch d {
	case agents.DeviceDesktop:
		c.Device = DeviceDesktop
	case agents.DeviceMobile:
		c.Device = DeviceMobile
	case agents.DeviceTablet:
		c.Device = DeviceTablet
	case agents.DeviceTV:
		c.Device = DeviceTV
	case agents.DeviceBot:
		c.Device = DeviceBot
	}
	return c
}
